package e2e

// Privacy holes of issue 13 closed against the real binary: FindCases
// tells a non-member no more than where to send the caller and is
// audited (hole 4).

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

const (
	findCasesRPC      = "/kontakt.routing.v1.RoutingService/FindCases"
	listAuditTrailRPC = "/kontakt.routing.v1.RoutingService/ListAuditTrail"
)

// setFields names the fields of m that hold a value.
func setFields(m protoreflect.ProtoMessage) []string {
	var out []string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		out = append(out, string(fd.Name()))
		return true
	})
	slices.Sort(out)
	return out
}

// TestFindCasesPrivacyByDefault: an agent with no queue searching by
// personnummer, phone or case number learns only case number, queue (with
// title and department), status and registration time of a case they may
// not read; a member gets the full summary; every search by a personal
// identifier shows in the person's audit trail and register extract.
func TestFindCasesPrivacyByDefault(t *testing.T) {
	e := startRouting(t, "")
	local := randDigits(t, 7)
	pnr := personnummer(1979, 3, 14, 300+int(local[2]-'0')*10, false)
	phone := "070" + local
	subject := "Bygglov för altan " + local
	id, number := e.register(t, fragaInput(subject, &intakev1.Contact{Name: "Greta Gran", Phone: phone, IdentityNumber: pnr}))
	e.waitRouted(t, number)

	find := func(p principal, req *routingv1.FindCasesRequest) []*routingv1.CaseSummary {
		t.Helper()
		ctx, cancel := e.as(t, p)
		defer cancel()
		resp, err := e.rc.FindCases(ctx, req)
		require.NoError(t, err)
		return resp.GetCases()
	}
	limited := []string{"case_number", "limited", "queue", "queue_title", "registered_at", "status"}
	keys := []struct {
		name    string
		req     *routingv1.FindCasesRequest
		audited bool
		class   casev1.DataClass
		purpose string
		nonMemb principal
	}{
		{"identity number", &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: tenDigit(pnr)}, Purpose: "vidarekoppling"},
			true, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER, "vidarekoppling", cilla},
		{"phone", &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Phone{Phone: phone}},
			true, casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, "sökning efter ärenden", cilla},
		{"case number", &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_CaseNumber{CaseNumber: number}},
			false, 0, "", cilla},
		{"officer of another department", &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: pnr}},
			true, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER, "sökning efter ärenden", olof},
	}
	searches := map[string]int{} // actor -> audited searches
	for _, k := range keys {
		t.Run(k.name, func(t *testing.T) {
			got := find(k.nonMemb, k.req)
			require.Len(t, got, 1)
			t.Logf("%s as %s: %v", k.name, k.nonMemb.subject, got[0])
			require.Equal(t, limited, setFields(got[0]), "a non-member's answer holds only the documented fields")
			require.Equal(t, number, got[0].GetCaseNumber())
			require.Equal(t, "kontaktcenter", got[0].GetQueue())
			require.Equal(t, "Kontaktcenter", got[0].GetQueueTitle())
			require.True(t, got[0].GetLimited())
			if k.audited {
				searches[k.nonMemb.subject]++
			}

			full := find(anna, k.req)
			require.Len(t, full, 1)
			require.False(t, full[0].GetLimited())
			require.Equal(t, id, full[0].GetCaseId())
			require.Equal(t, subject, full[0].GetSubject())
			require.Equal(t, casev1.CaseType_CASE_TYPE_FRAGA, full[0].GetType())
			require.NotEmpty(t, full[0].GetCategory())
			require.Equal(t, "Kontaktcenter", full[0].GetQueueTitle())
			if k.audited {
				searches[anna.subject]++
			}
		})
	}

	// The person's trail, found by their identity number, shows every
	// search by their identifiers, whoever searched.
	trail := e.auditTrail(t, &routingv1.ListAuditTrailRequest{Subject: &routingv1.ListAuditTrailRequest_IdentityNumber{IdentityNumber: pnr}})
	got := map[string]int{}
	for _, rec := range trail {
		if rec.GetRpc() != findCasesRPC {
			continue
		}
		require.Equal(t, id, rec.GetCaseId())
		require.Len(t, rec.GetDataClasses(), 1)
		require.NotEmpty(t, rec.GetPurpose())
		got[rec.GetActor()]++
	}
	require.Equal(t, searches, got, "one FindCases record per search by a personal identifier and case found")
	require.True(t, slices.ContainsFunc(trail, func(r *routingv1.AuditRecord) bool {
		return r.GetActor() == cilla.subject && r.GetPurpose() == "vidarekoppling" &&
			slices.Equal(r.GetDataClasses(), []casev1.DataClass{casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER})
	}), "cilla's search by identity number with its purpose")

	// The register extract lists the searches among the earlier reads.
	ctx, cancel := e.as(t, dina)
	defer cancel()
	ext, err := retentionv1.NewRetentionServiceClient(e.conns[0]).SubjectAccess(ctx, &retentionv1.SubjectAccessRequest{
		Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: pnr}}, Purpose: "registerutdrag",
	})
	require.NoError(t, err)
	require.Len(t, ext.GetCases(), 1)
	readers := map[string]bool{}
	for _, r := range ext.GetCases()[0].GetReads() {
		readers[r.GetActor()+"/"+r.GetPurpose()] = true
	}
	require.True(t, readers["cilla/vidarekoppling"], "the extract shows cilla's search: %v", readers)
	require.True(t, readers["olof/sökning efter ärenden"], "the extract shows olof's search: %v", readers)

	// A search that finds nothing has no case to record it on.
	require.Empty(t, find(cilla, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Phone{Phone: "070" + randDigits(t, 7)}}))
}

// auditConsumers is the number of consumers on the audit stream, read
// through the embedded NATS port.
func (e *routingEnv) auditConsumers(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, auditStream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info.State.Consumers
}

// TestAuditTrailReadsLeaveNoConsumers: 10,000 ListAuditTrail calls and
// some register extracts in a row leave the audit stream with as many
// consumers as before, and none of them fails (issue 13, hole 7: about a
// thousand calls once left 981 consumers, and most calls after them
// failed).
func TestAuditTrailReadsLeaveNoConsumers(t *testing.T) {
	const (
		reads    = 10000
		extracts = 100
		workers  = 4
		giveUp   = 200 // failures after which the run stops (the base binary)
	)
	e := startRouting(t, "")
	local := randDigits(t, 7)
	pnr := personnummer(1985, 9, 9, 500+int(local[4]-'0')*10, false)
	id, number := e.register(t, fragaInput("Revision "+local, &intakev1.Contact{Name: "Rut Revision", Phone: "070" + local, IdentityNumber: pnr}))
	e.waitRouted(t, number)
	for range 3 {
		ctx, cancel := e.as(t, anna)
		_, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: id, Purpose: "återkoppling"})
		cancel()
		require.NoError(t, err)
	}
	before := e.auditConsumers(t)
	dpoToken := e.token(t, dina)
	rt := retentionv1.NewRetentionServiceClient(e.conns[1])

	start := time.Now()
	var (
		mu       sync.Mutex
		failures = map[string]int{}
		failed   atomic.Int64
		next     atomic.Int64
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rc := routingv1.NewRoutingServiceClient(e.conns[w%len(e.conns)])
			for {
				i := next.Add(1)
				if i > reads+extracts || failed.Load() >= giveUp {
					return
				}
				ctx, cancel := withToken(dpoToken)
				var err error
				if i%((reads+extracts)/extracts) == 0 { // 100 extracts among 10,000 trail reads
					var resp *retentionv1.SubjectAccessResponse
					resp, err = rt.SubjectAccess(ctx, &retentionv1.SubjectAccessRequest{
						Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: pnr}}, Purpose: "registerutdrag",
					})
					if err == nil && len(resp.GetCases()) != 1 {
						err = fmt.Errorf("extract with %d cases", len(resp.GetCases()))
					}
				} else {
					var resp *routingv1.ListAuditTrailResponse
					resp, err = rc.ListAuditTrail(ctx, &routingv1.ListAuditTrailRequest{Subject: &routingv1.ListAuditTrailRequest_CaseId{CaseId: id}})
					if err == nil && len(resp.GetRecords()) < 3 {
						err = fmt.Errorf("trail with %d records", len(resp.GetRecords()))
					}
				}
				cancel()
				if err != nil {
					failed.Add(1)
					mu.Lock()
					failures[status.Code(err).String()]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	done := min(next.Load()-int64(workers), reads+extracts)
	after := e.auditConsumers(t)
	t.Logf("%d audit-trail reads and register extracts in %s: %d failed %v; consumers on %s before %d, after %d",
		done, time.Since(start).Round(time.Millisecond), failed.Load(), failures, auditStream, before, after)
	require.Zero(t, failed.Load(), "failed reads: %v", failures)
	require.Equal(t, before, after, "consumers left on the audit stream")
}
