package e2e

// Attachment content end to end (issue 18, attachments): a real SMTP
// client delivers a mail with a PDF and an inline image, an e-service
// uploads a file with its form over REST; an authorised caller downloads
// the exact bytes (gRPC and REST), every download is in the audit log;
// the object store holds only ciphertext; a wrong type and an oversized
// upload or mail are refused and store nothing; at the plan's deadline
// (the personal-data cull, day 91) downloads are refused with
// FAILED_PRECONDITION and the objects are gone; after the case's
// deletion (day 731) a download is NOT_FOUND; and neither the data
// directory nor any log holds the markers placed in the subject, body,
// sender address, file names and file contents.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

// The object store bucket and the download RPC, as ARCHITECTURE.md and
// docs/api.md name them.
const (
	attBucket      = "KONTAKT_ATTACHMENTS"
	getAttachRPC   = "/kontakt.routing.v1.RoutingService/GetAttachment"
	attMaxMailSize = 2 << 20
)

// attStart starts kontakt with a mail receiver (messages up to
// attMaxMailSize), the routing queues and the retention sweeper with the
// clock offsetDays ahead.
func attStart(t *testing.T, dataDir string, offsetDays int) *mailEnv {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		cfg := fmt.Sprintf(`mail:
  inbound:
    listen: %s
    max_message_bytes: %d
    per_sender: {per_minute: 600, burst: 100}
    addresses:
      - {address: kontakt@kommun.se, category: ovrigt}
`, addr, attMaxMailSize)
		e := startRouting(t, dataDir, cfg, retConfig(offsetDays))
		if waitListening(addr, 30*time.Second) {
			return &mailEnv{routingEnv: e, smtpAddr: addr}
		}
		require.Less(t, attempt, 3, "the mail receiver never listened on %s:\n%s", addr, e.k.stderr.String())
	}
}

// download reads a whole attachment as p with GetAttachment, part by
// part, and returns the answers.
func (e *mailEnv) download(t *testing.T, p principal, caseID string, index int32) ([]*routingv1.GetAttachmentResponse, error) {
	t.Helper()
	ctx, cancel := e.as(t, p)
	defer cancel()
	var parts []*routingv1.GetAttachmentResponse
	var offset int64
	for {
		resp, err := e.rc.GetAttachment(ctx, &routingv1.GetAttachmentRequest{CaseId: caseID, Index: index, Purpose: "e2e: read the file", Offset: offset})
		if err != nil {
			return parts, err
		}
		parts = append(parts, resp)
		if resp.GetNextOffset() == 0 {
			return parts, nil
		}
		offset = resp.GetNextOffset()
	}
}

// joined is the content of a download's parts.
func joined(parts []*routingv1.GetAttachmentResponse) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p.GetContent()...)
	}
	return b
}

// objectNames lists the live objects of the attachment bucket (none when
// the bucket does not exist).
func (e *mailEnv) objectNames(t *testing.T) []string {
	t.Helper()
	ctx, cancel := e.as(t, sara)
	defer cancel()
	obs, err := e.js.ObjectStore(ctx, attBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	require.NoError(t, err)
	infos, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, i := range infos {
		names = append(names, i.Name)
	}
	return names
}

// rawObject is an object's stored bytes, as anyone with access to NATS
// (or its files) would read them.
func (e *mailEnv) rawObject(t *testing.T, name string) []byte {
	t.Helper()
	ctx, cancel := e.as(t, sara)
	defer cancel()
	obs, err := e.js.ObjectStore(ctx, attBucket)
	require.NoError(t, err)
	b, err := obs.GetBytes(ctx, name)
	require.NoError(t, err)
	return b
}

func attRandom(t *testing.T, prefix string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return append([]byte(prefix), b...)
}

// attMail is a multipart mail with a text body, a PDF attachment and an
// inline PNG without a name, both base64 as mail programs send them.
func attMail(from, subject, body, pdfName string, pdf, png []byte) string {
	b64 := func(b []byte) string {
		s := base64.StdEncoding.EncodeToString(b)
		var out strings.Builder
		for len(s) > 76 {
			out.WriteString(s[:76] + "\n")
			s = s[76:]
		}
		out.WriteString(s + "\n")
		return out.String()
	}
	return fmt.Sprintf(`From: <%s>
To: kontakt@kommun.se
Subject: %s
Message-ID: <%s.att@example.se>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=yttre

--yttre
Content-Type: text/plain; charset=utf-8

%s
--yttre
Content-Type: application/pdf; name="%s"
Content-Disposition: attachment; filename="%s"
Content-Transfer-Encoding: base64

%s--yttre
Content-Type: image/png
Content-Disposition: inline
Content-Transfer-Encoding: base64

%s--yttre--
`, from, subject, subject, body, pdfName, pdfName, b64(pdf), b64(png))
}

func TestAttachmentsSealedDownloadedAndDestroyed(t *testing.T) {
	dataDir := t.TempDir()
	e := attStart(t, dataDir, 0)
	marker := randHex(t, 8)
	sender := "avsandare-" + marker + "@example.se"
	subject := "AMNE" + marker
	body := "BREVTEXT" + marker
	pdfName := "ritning-" + marker + ".pdf"
	pdf := attRandom(t, "%PDF-1.4\nPDFINNEHALL"+marker+"\n", 200<<10)
	png := attRandom(t, "\x89PNG\r\n\x1a\nPNGINNEHALL"+marker, 3000)
	formName := "foto-" + marker + ".jpg"
	formFile := attRandom(t, "\xff\xd8\xff\xe0FORMINNEHALL"+marker, 1500<<10)
	needles := []string{subject, body, sender, "avsandare-" + marker, pdfName, "PDFINNEHALL" + marker, "PNGINNEHALL" + marker, formName, "FORMINNEHALL" + marker}
	logs := []string{}

	// ---- A mail with a PDF and an image becomes a case with both. ----
	require.NoError(t, e.send(sender, []string{"kontakt@kommun.se"}, attMail(sender, subject, body, pdfName, pdf, png)))
	mailCase := e.casesOf(t, sender, 1)[0].GetCaseId()
	view := e.getCase(t, mailCase)
	require.Len(t, view.GetAttachments(), 2, "the mail's two files are the case's attachments")
	require.Equal(t, "application/pdf", view.GetAttachments()[0].GetContentType())
	require.Equal(t, int64(len(pdf)), view.GetAttachments()[0].GetSizeBytes())
	require.Equal(t, "image/png", view.GetAttachments()[1].GetContentType())
	for _, a := range view.GetAttachments() {
		require.True(t, a.GetStored(), "the content is stored")
	}
	require.Equal(t, []string{pdfName, "bilaga-2"}, view.GetPersonalData().GetAttachmentNames())

	t.Run("download returns the exact bytes and is audited", func(t *testing.T) {
		parts, err := e.download(t, anna, mailCase, 0)
		require.NoError(t, err)
		require.True(t, bytes.Equal(pdf, joined(parts)), "the PDF as sent")
		require.Equal(t, pdfName, parts[0].GetName())
		require.Equal(t, "application/pdf", parts[0].GetContentType())
		require.Equal(t, int64(len(pdf)), parts[0].GetSizeBytes())
		parts, err = e.download(t, anna, mailCase, 1)
		require.NoError(t, err)
		require.True(t, bytes.Equal(png, joined(parts)), "the image as sent")

		_, err = e.download(t, anna, mailCase, 2)
		require.Equal(t, codes.NotFound, status.Code(err), "no third file: %v", err)
		_, err = e.download(t, cilla, mailCase, 0)
		require.Equal(t, codes.PermissionDenied, status.Code(err), "cilla may not read the case: %v", err)

		var reads int
		for _, r := range e.auditTrail(t, &routingv1.ListAuditTrailRequest{Subject: &routingv1.ListAuditTrailRequest_CaseId{CaseId: mailCase}}) {
			if r.GetRpc() == getAttachRPC {
				require.Equal(t, "anna", r.GetActor())
				require.Equal(t, []casev1.DataClass{casev1.DataClass_DATA_CLASS_ATTACHMENTS}, r.GetDataClasses())
				require.Equal(t, "e2e: read the file", r.GetPurpose())
				reads++
			}
		}
		require.Equal(t, 2, reads, "one audit record per download, none for the refused ones")
	})

	t.Run("the object store holds ciphertext only", func(t *testing.T) {
		raw := e.rawObject(t, mailCase+"/0")
		require.Greater(t, len(raw), len(pdf))
		require.False(t, bytes.Contains(raw, []byte("PDFINNEHALL"+marker)), "the PDF's marker is in the object store in clear")
		require.False(t, bytes.Contains(raw, pdf[len(pdf)-64:]), "the PDF's bytes are in the object store in clear")
	})

	// ---- A form uploads a file over REST; it is read in parts. ----
	form := e.k.Token(t, "e-tjanst-bilagor", "form-client")
	var formNumber string
	t.Run("a form upload is downloaded in parts, over gRPC and REST", func(t *testing.T) {
		a := e.submit(t, overREST, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: "att-" + marker, Case: &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Category: "park-och-lek",
			Description: "Se bifogat foto.",
			Attachments: []*intakev1.AttachmentInput{{Name: formName, ContentType: "image/jpeg", SizeBytes: int64(len(formFile)), AttachmentId: "foto-1", Content: formFile}},
		}})
		require.Equal(t, http.StatusOK, a.HTTPStatus, "%s", a.Body)
		formNumber = a.CaseNumber
		id := e.waitRouted(t, formNumber).GetCaseId()
		parts, err := e.download(t, sara, id, 0)
		require.NoError(t, err)
		require.Len(t, parts, 2, "1.5 MiB comes in two parts of at most 1 MiB")
		require.Equal(t, int64(1<<20), parts[1].GetOffset())
		require.True(t, bytes.Equal(formFile, joined(parts)))
		require.Equal(t, formName, parts[0].GetName())

		req, err := http.NewRequest(http.MethodGet, "http://"+e.k.Addr+"/v1/cases/"+id+"/attachments/0?purpose=rest", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+e.token(t, sara))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		rb, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", rb)
		var got struct {
			Name       string `json:"name"`
			Content    []byte `json:"content"`
			NextOffset string `json:"nextOffset"`
		}
		require.NoError(t, json.Unmarshal(rb, &got))
		require.Equal(t, formName, got.Name)
		require.True(t, bytes.Equal(formFile[:1<<20], got.Content), "REST's base64 content is the first MiB")
		require.Equal(t, fmt.Sprint(1<<20), got.NextOffset)
	})
	stored := e.objectNames(t)
	require.Len(t, stored, 3, "two files of the mail and one of the form: %v", stored)

	t.Run("wrong type and oversize are refused and store nothing", func(t *testing.T) {
		upload := func(key string, a *intakev1.AttachmentInput) answer {
			return e.submit(t, overREST, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: key + marker, Case: &intakev1.CaseInput{
				Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Category: "park-och-lek", Description: "Bilaga.",
				Attachments: []*intakev1.AttachmentInput{a},
			}})
		}
		exe := []byte("MZ\x90\x00 program")
		a := upload("exe-", &intakev1.AttachmentInput{Name: "x.exe", ContentType: "application/x-msdownload", SizeBytes: int64(len(exe)), AttachmentId: "x", Content: exe})
		require.Equal(t, http.StatusBadRequest, a.HTTPStatus, "%s", a.Body)
		require.Contains(t, a.fields(), "case.attachments[0].contentType", "REST names fields in JSON")

		a = upload("size-", &intakev1.AttachmentInput{Name: "a.pdf", ContentType: "application/pdf", SizeBytes: 99, AttachmentId: "a", Content: []byte("%PDF-1.4")})
		require.Equal(t, http.StatusBadRequest, a.HTTPStatus, "%s", a.Body)
		require.Contains(t, a.fields(), "case.attachments[0].sizeBytes")

		big := bytes.Repeat([]byte("A"), 5<<20)
		a = upload("big-", &intakev1.AttachmentInput{Name: "big.pdf", ContentType: "application/pdf", SizeBytes: int64(len(big)), AttachmentId: "b", Content: big})
		require.Equal(t, http.StatusRequestEntityTooLarge, a.HTTPStatus, "an upload over limits.max_request_bytes: %s", a.Body)

		err := e.send("exe-"+marker+"@example.se", []string{"kontakt@kommun.se"}, strings.Replace(attMail("exe-"+marker+"@example.se", "Program", "Kör detta.", "x.pdf", exe, png), "Content-Type: application/pdf", "Content-Type: application/x-msdownload", 1))
		require.Equal(t, 550, smtpCode(err), "a mail with a file of a type not accepted: %v", err)
		require.Contains(t, err.Error(), "type not accepted")

		huge := attRandom(t, "%PDF-1.4\n", attMaxMailSize)
		err = e.send("stor-"+marker+"@example.se", []string{"kontakt@kommun.se"}, attMail("stor-"+marker+"@example.se", "Stor", "Stor fil.", "stor.pdf", huge, png))
		require.Equal(t, 552, smtpCode(err), "a mail over max_message_bytes: %v", err)

		require.ElementsMatch(t, stored, e.objectNames(t), "a refusal stored nothing")
	})

	t.Run("the scan finds a marker in a plain-text control file", func(t *testing.T) {
		control := filepath.Join(dataDir, "scan-control.txt")
		require.NoError(t, os.WriteFile(control, []byte("x "+body+" x"), 0o600))
		found := scanDir(t, dataDir, needles)
		require.Equal(t, []string{control}, found[body], "the scan reads every file's raw bytes")
		require.NoError(t, os.Remove(control))
	})
	for n, files := range scanDir(t, dataDir, needles) {
		t.Errorf("day 0: %q in clear in %v", n, files)
	}
	require.NoError(t, e.k.Stop(t))
	logs = append(logs, e.k.stderr.String())

	// ---- Day 91: the personal-data cull redacts the attachments. ----
	e = attStart(t, dataDir, 91)
	r := &retEnv{routingEnv: e.routingEnv, rt: retentionv1.NewRetentionServiceClient(e.conns[0]), stats: statisticsv1.NewStatisticsServiceClient(e.conns[1])}
	formCase := e.waitRouted(t, formNumber).GetCaseId()
	r.waitLedger(t, 60*time.Second, "the redaction of both cases' attachments", func(m map[string]retLedger) bool {
		return m[mailCase].fullyRedacted() && m[formCase].fullyRedacted()
	})
	for _, id := range []string{mailCase, formCase} {
		var err error
		require.True(t, eventually(30*time.Second, func() bool {
			_, err = e.download(t, sara, id, 0)
			return status.Code(err) == codes.FailedPrecondition
		}), "a download after the deadline: %v", err)
	}
	var left []string
	require.True(t, eventually(30*time.Second, func() bool {
		left = e.objectNames(t)
		return len(left) == 0
	}), "objects left after the deadline: %v", left)
	require.NoError(t, e.k.Stop(t))
	logs = append(logs, e.k.stderr.String())
	for n, files := range scanDir(t, dataDir, needles) {
		t.Errorf("day 91: %q in clear in %v", n, files)
	}

	// ---- Day 731: the cases are deleted; a download finds no case. ----
	e = attStart(t, dataDir, 731)
	r = &retEnv{routingEnv: e.routingEnv, rt: retentionv1.NewRetentionServiceClient(e.conns[0]), stats: statisticsv1.NewStatisticsServiceClient(e.conns[1])}
	r.waitLedger(t, 60*time.Second, "the deletion of both cases", func(m map[string]retLedger) bool {
		return len(m[mailCase][retKindDeletion]) == 1 && len(m[formCase][retKindDeletion]) == 1
	})
	for _, id := range []string{mailCase, formCase} {
		var err error
		require.True(t, eventually(30*time.Second, func() bool {
			_, err = e.download(t, sara, id, 0)
			return status.Code(err) == codes.NotFound
		}), "a download of a deleted case: %v", err)
	}
	require.Empty(t, e.objectNames(t))
	require.NoError(t, e.k.Stop(t))
	logs = append(logs, e.k.stderr.String())

	for n, files := range scanDir(t, dataDir, needles) {
		t.Errorf("day 731: %q in clear in %v", n, files)
	}
	for i, log := range logs {
		retNoMarkersIn(t, fmt.Sprintf("the log of start %d", i+1), log, needles)
	}
}
