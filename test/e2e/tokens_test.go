package e2e

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/subject"
)

// tokPerson is one citizen of the token test: the values as typed, and
// the blind-index token of each, computed the way the binary computes
// them.
type tokPerson struct {
	email, phone, pnr string
	tokens            map[string]string // kind -> hex token
}

func (p tokPerson) keys() map[string]subject.Key {
	return map[string]subject.Key{
		"email": {Email: p.email}, "phone": {Phone: p.phone}, "identity": {IdentityNumber: p.pnr},
	}
}

// tokNeedles are the byte strings a scan for the tokens looks for: each
// token in hex, as the read models use it, and as its 32 raw bytes.
func tokNeedles(t *testing.T, people []tokPerson) (needles []string, name map[string]string) {
	t.Helper()
	name = map[string]string{}
	for i, p := range people {
		for kind, tok := range p.tokens {
			raw, err := hex.DecodeString(tok)
			require.NoError(t, err)
			label := fmt.Sprintf("person %d's %s token", i, kind)
			needles = append(needles, tok, string(raw))
			name[tok], name[string(raw)] = label+" (hex)", label+" (raw)"
		}
	}
	return needles, name
}

// tokFound counts the tokens of which any form is in any file.
func tokFound(found map[string][]string, people []tokPerson) (int, []string) {
	var n int
	var where []string
	for i, p := range people {
		for kind, tok := range p.tokens {
			raw, _ := hex.DecodeString(tok)
			files := append(append([]string{}, found[tok]...), found[string(raw)]...)
			if len(files) > 0 {
				n++
				where = append(where, fmt.Sprintf("person %d's %s token in %v", i, kind, files))
			}
		}
	}
	return n, where
}

// tokNotLogged requires that no token is in the server's log.
func tokNotLogged(t *testing.T, logs string, people []tokPerson) {
	t.Helper()
	require.Contains(t, logs, "shut down cleanly", "the log is the server's")
	for i, p := range people {
		for kind, tok := range p.tokens {
			require.NotContains(t, logs, tok, "person %d's %s token is in the log", i, kind)
		}
	}
}

// TestBlindIndexTokensLeaveNoBytesAfterRedaction: a citizen's blind-index
// tokens (HMACs of the personnummer, phone number and e-mail address,
// which anyone holding the master key can test guesses against) must be
// gone from every file under the data directory once the case's personal
// data is redacted: by an erasure while the binary runs, and by the
// retention plan 91 days later. The tokens are computed as the binary
// computes them, from the master key in the data directory; before the
// redaction the same scan finds them, so it does read the files they are
// in.
func TestBlindIndexTokensLeaveNoBytesAfterRedaction(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	e := retStart(t, dataDir, 0)

	master, err := seal.LoadMasterKey(filepath.Join(dataDir, "master.key"), nil, false)
	require.NoError(t, err)
	key, err := master.DeriveKey(blindindex.KeyPurpose)
	require.NoError(t, err)
	blind, err := blindindex.New(key)
	require.NoError(t, err)

	run := randHex(t, 4)
	people := make([]tokPerson, 4)
	for i := range people {
		serial, err := strconv.Atoi(randDigits(t, 3))
		require.NoError(t, err)
		d := randDigits(t, 7)
		p := tokPerson{
			email:  fmt.Sprintf("tok%s.%d@example.se", run, i),
			phone:  "070-" + d[:3] + " " + d[3:5] + " " + d[5:],
			pnr:    personnummer(1950+i*11, 1+i, 10+i, 100+serial%900, false),
			tokens: map[string]string{},
		}
		for kind, k := range p.keys() {
			tok, err := subject.Token(blind, k, time.Now())
			require.NoError(t, err)
			p.tokens[kind] = tok
		}
		people[i] = p
		// Two cases each, so a token stands for more than one case.
		for range 2 {
			e.register(t, fragaInput("Fråga om sophämtning", &intakev1.Contact{
				Name: "Testperson", Email: p.email, Phone: p.phone, IdentityNumber: p.pnr,
			}))
		}
	}
	needles, names := tokNeedles(t, people)
	total := len(needles) / 2

	// lookups asks routing (FindCases, as the supervisor) and retention
	// (a register extract, as the dpo) how many cases each key of p
	// finds.
	lookups := func(p tokPerson) (routing, retention int) {
		for _, k := range p.keys() {
			rq := &routingv1.FindCasesRequest{}
			switch {
			case k.Email != "":
				rq.Key = &routingv1.FindCasesRequest_Email{Email: k.Email}
			case k.Phone != "":
				rq.Key = &routingv1.FindCasesRequest_Phone{Phone: k.Phone}
			default:
				rq.Key = &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: k.IdentityNumber}
			}
			ctx, cancel := e.as(t, sara)
			resp, err := e.rc.FindCases(ctx, rq)
			cancel()
			require.NoError(t, err)
			routing += len(resp.GetCases())
			sk := &retentionv1.SubjectKey{}
			switch {
			case k.Email != "":
				sk.Key = &retentionv1.SubjectKey_Email{Email: k.Email}
			case k.Phone != "":
				sk.Key = &retentionv1.SubjectKey_Phone{Phone: k.Phone}
			default:
				sk.Key = &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: k.IdentityNumber}
			}
			ctx, cancel = e.as(t, dina)
			ext, err := e.rt.SubjectAccess(ctx, &retentionv1.SubjectAccessRequest{Subject: sk, Purpose: "test"})
			cancel()
			require.NoError(t, err)
			retention += len(ext.GetCases())
		}
		return routing, retention
	}
	waitLookups := func(p tokPerson, want int, what string) {
		t.Helper()
		var r, x int
		require.True(t, eventually(60*time.Second, func() bool {
			r, x = lookups(p)
			return r == want && x == want
		}), "%s: routing finds %d, retention %d, want %d each", what, r, x, want)
	}
	for i, p := range people {
		// Three keys, two cases each.
		waitLookups(p, 6, fmt.Sprintf("person %d's cases in both read models", i))
	}

	// Control: the scan finds every token while the cases hold their
	// data (the read models' files are where it looks).
	found, _ := retScanDir(t, dataDir, "", needles)
	n, _ := tokFound(found, people)
	require.Equal(t, total, n, "before the redaction the scan finds every token")
	// ... and only in the read models' token files: never in the event
	// log, the audit stream, the key store or a read model's main file.
	for needle, files := range found {
		for _, f := range files {
			assert.True(t, strings.HasSuffix(f, ".tokens.db"), "%s is in %s", names[needle], f)
		}
	}

	// An erasure of two people while the binary runs.
	for i, p := range people[:2] {
		sk := &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: p.pnr}}
		if i == 1 {
			sk = &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: p.email}}
		}
		ctx, cancel := e.as(t, dina)
		resp, err := e.rt.EraseSubject(ctx, &retentionv1.EraseSubjectRequest{Subject: sk, Reason: "begäran om radering"})
		cancel()
		require.NoError(t, err)
		require.Len(t, resp.GetOutcomes(), 2)
		for _, o := range resp.GetOutcomes() {
			require.True(t, o.GetErased(), o.GetExplanation())
		}
	}
	for i, p := range people[:2] {
		waitLookups(p, 0, fmt.Sprintf("person %d erased", i))
	}
	// The lookups come back empty as soon as the keys are destroyed; each
	// read model removes the tokens (and compacts its token file) when
	// its projector applies the redaction, a moment later. So the scan is
	// repeated until the tokens are gone, within a deadline.
	found, n, where := tokScanUntilGone(t, dataDir, needles, people[:2])
	t.Logf("after the erasure, running: %d of %d tokens of the erased people on disk", n, 6)
	// assert, not require: the test goes on, so a failing run reports
	// the counts of every stage.
	assert.Zero(t, n, "tokens of erased people on disk while running: %v", where)
	n, _ = tokFound(found, people[2:])
	require.Equal(t, 6, n, "the others' tokens are still on disk (the scan reads the files)")

	// 91 days later the plan redacts everyone's contact details and
	// identity number.
	require.NoError(t, e.k.Stop(t))
	tokNotLogged(t, e.k.stderr.String(), people)
	e = retStart(t, dataDir, 91)
	for i, p := range people {
		waitLookups(p, 0, fmt.Sprintf("person %d redacted by the plan", i))
	}
	_, n, where = tokScanUntilGone(t, dataDir, needles, people)
	t.Logf("after the plan's redaction, running: %d of %d tokens on disk", n, total)
	assert.Zero(t, n, "tokens on disk while running: %v", where)

	require.NoError(t, e.k.Stop(t))
	tokNotLogged(t, e.k.stderr.String(), people)
	found, files := retScanDir(t, dataDir, "", needles)
	n, where = tokFound(found, people)
	t.Logf("after the plan's redaction, stopped: %d of %d tokens in %d files", n, total, len(files))
	require.Zero(t, n, "tokens on disk after stop: %v", where)
	for _, needle := range needles {
		require.Empty(t, found[needle], "%s", names[needle])
	}
}

// tokScanUntilGone scans the data directory for the tokens of people until
// none is left or 30 seconds have passed, and returns the last scan, the
// number of their tokens it found and where. The time it took is logged.
func tokScanUntilGone(t *testing.T, dataDir string, needles []string, people []tokPerson) (map[string][]string, int, []string) {
	t.Helper()
	start := time.Now()
	var (
		found map[string][]string
		n     int
		where []string
	)
	eventually(30*time.Second, func() bool {
		found, _ = retScanDir(t, dataDir, "", needles)
		n, where = tokFound(found, people)
		return n == 0
	})
	t.Logf("token scan: %d left after %s", n, time.Since(start).Round(time.Millisecond))
	return found, n, where
}
