package e2e

// Backup and restore that keep erasure (issue 14, point 1): restoring any
// backup never makes readable what was redacted or erased after it was
// taken, and never loses a retention receipt. Against the real binary:
// `kontakt backup` while serving, an erasure and the plan's own redaction
// and deletion after it, `kontakt restore` of the old backup with the
// shred journal, and then what every client and a raw read of the disk
// see.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/shredjournal"
	"github.com/kontakt-se/kontakt/pkg/subject"
)

// The names the backup tests look for, as README.md documents them.
const (
	bkKeyStream   = "KV_KONTAKT_KEYS"
	bkJournalFile = "shred.journal"
	bkFaultEnv    = "KONTAKT_DEV_FAULT"
)

// bkPerson is one data subject of the backup tests, with a unique marker
// in every personal field, and the cases registered for them.
type bkPerson struct {
	label              string
	name, email, phone string
	pnr                string
	markers            []string          // every personal value, as stored or typed
	field              map[string]string // the markers by field
	ids, numbers       []string
	answer, notes      []string
}

func bkNewPerson(t *testing.T, label, run string, year int) *bkPerson {
	t.Helper()
	d := randDigits(t, 7)
	serial, err := strconv.Atoi(randDigits(t, 2))
	require.NoError(t, err)
	p := &bkPerson{
		label: label,
		name:  "bk" + run + label + "name",
		email: "bk" + run + label + "mail@example.se",
		phone: "070-" + d[:3] + " " + d[3:5] + " " + d[5:],
		pnr:   personnummer(year, 4, 17, 100+serial*9, false),
		field: map[string]string{},
	}
	p.markers = append(p.markers, p.name, p.email, "70"+d, tenDigit(p.pnr))
	return p
}

// marker makes a personal value of p's and remembers it.
func (p *bkPerson) marker(run, field string) string {
	m := "bk" + run + p.label + field
	p.markers = append(p.markers, m)
	p.field[field] = m
	return m
}

// bkPlan is Mölndal's plan with letters culled fast: personal data after
// 10 days and the whole case after 40, so that one start 41 days ahead
// shows the plan redacting (a chat transcript, after 30 days) and
// deleting (the letter) while the questions (90 days) stay whole.
func bkPlan(t *testing.T) string {
	t.Helper()
	base, err := os.ReadFile(filepath.Join(repoRoot(t), "services", "retention", "domain", "plans", "molndal.yaml"))
	require.NoError(t, err)
	plan := strings.Replace(string(base), `version: "2021.1"`, `version: "2021.1-bk"`, 1) + `
  - name: brev-personuppgifter
    types: [brev]
    classes: [contact, identity, freetext, attachments, answer]
    period: 10d
    from: registration
    action: redact
    note: Test plan of the backup tests.

  - name: brev-arendet
    types: [brev]
    classes: [case]
    period: 40d
    from: registration
    action: delete
    note: Test plan of the backup tests.
`
	path := filepath.Join(t.TempDir(), "plan.yaml")
	require.NoError(t, os.WriteFile(path, []byte(plan), 0o600))
	return path
}

// bkRetention is the retention part of the configuration.
func bkRetention(plan string, offsetDays int) string {
	s := fmt.Sprintf("retention:\n  sweep_interval: 200ms\n  plan_file: %s\n", plan)
	if offsetDays > 0 {
		s += fmt.Sprintf("  dev_clock_offset: %dh\n", offsetDays*24)
	}
	return s
}

// bkUseJournal sets the shred journal's directory (retention.journal_dir)
// for every binary the test starts from now on. It is set in the
// environment, as an operator may, so that a binary from before the
// journal starts all the same, and the test shows what it does.
func bkUseJournal(t *testing.T, dir string) {
	t.Helper()
	t.Setenv("KONTAKT_RETENTION_JOURNAL_DIR", dir)
}

// bkBlind is the blind index of a data directory, derived from its master
// key as kontakt derives it: what anyone holding the key could compute.
func bkBlind(t *testing.T, masterKeyFile string) *blindindex.Index {
	t.Helper()
	master, err := seal.LoadMasterKey(masterKeyFile, nil, false)
	require.NoError(t, err)
	key, err := master.DeriveKey(blindindex.KeyPurpose)
	require.NoError(t, err)
	blind, err := blindindex.New(key)
	require.NoError(t, err)
	return blind
}

// bkTokens are the blind-index tokens of p's e-mail, phone and identity
// number.
func bkTokens(t *testing.T, blind *blindindex.Index, p *bkPerson) []string {
	t.Helper()
	var out []string
	for _, k := range []subject.Key{{Email: p.email}, {Phone: p.phone}, {IdentityNumber: p.pnr}} {
		tok, err := subject.Token(blind, k, time.Now())
		require.NoError(t, err)
		out = append(out, tok)
	}
	return out
}

// bkWrappedKeys returns the wrapped data keys the key store holds (as
// bytes on disk would hold them) for ids: key ids, or case ids, which
// stand for every class's keys of the first generations. The store keeps
// one record per case, so the keys are read through the store rather than
// taken whole from the stream's messages.
func (e *routingEnv) bkWrappedKeys(t *testing.T, ids []string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := seal.NewNATSKeyStore(ctx, e.js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	var out []string
	for _, id := range ids {
		keyIDs := []string{id}
		if _, _, _, err := seal.ParseKeyID(id); err != nil {
			keyIDs = nil
			for _, c := range seal.Classes() {
				for gen := range uint32(4) {
					keyID, err := seal.KeyID(id, c, gen)
					require.NoError(t, err)
					keyIDs = append(keyIDs, keyID)
				}
			}
		}
		for _, keyID := range keyIDs {
			w, err := store.Get(ctx, keyID)
			if errors.Is(err, seal.ErrKeyNotFound) || errors.Is(err, seal.ErrKeyDestroyed) {
				continue
			}
			require.NoError(t, err, keyID)
			out = append(out, string(w))
		}
	}
	return out
}

// bkVerify runs `kontakt retention verify` and returns its line.
func (e *routingEnv) bkVerify(t *testing.T) (int, string) {
	t.Helper()
	code, out := runKontakt(t, "retention", "verify", "--config", e.k.Config, "--addr", e.k.Addr)
	require.Equal(t, 0, code, out)
	m := regexp.MustCompile(`ledger verified: (\d+) receipts .*chain head ([0-9a-f]{64})`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	return n, m[2]
}

// bkRegister registers a case for p as anna and remembers it.
func (e *routingEnv) bkRegister(t *testing.T, p *bkPerson, in *intakev1.CaseInput) string {
	t.Helper()
	id, number := e.register(t, in)
	p.ids, p.numbers = append(p.ids, id), append(p.numbers, number)
	e.waitRouted(t, number)
	return id
}

// bkWork answers a case and adds a note, as a supervisor, each with a
// marker.
func (e *routingEnv) bkWork(t *testing.T, p *bkPerson, id, run string) {
	t.Helper()
	ctx, cancel := e.as(t, sara)
	defer cancel()
	_, err := e.rc.AssignCase(ctx, &routingv1.AssignCaseRequest{CaseId: id, Assignee: "sara"})
	require.NoError(t, err)
	answer := p.marker(run, fmt.Sprintf("answer%d", len(p.answer)))
	_, err = e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: id, Answer: "Svar: " + answer})
	require.NoError(t, err)
	p.answer = append(p.answer, answer)
	note := p.marker(run, fmt.Sprintf("note%d", len(p.notes)))
	_, err = e.rc.AddNote(ctx, &routingv1.AddNoteRequest{CaseId: id, Text: "Anteckning: " + note})
	require.NoError(t, err)
	p.notes = append(p.notes, note)
}

// bkView is GetCase as the supervisor, as JSON (what a client sees);
// empty when the case is not found.
func (e *routingEnv) bkView(t *testing.T, id string) string {
	t.Helper()
	ctx, cancel := e.as(t, sara)
	defer cancel()
	resp, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: id, Purpose: "kontroll efter återläsning"})
	if status.Code(err) == codes.NotFound {
		return ""
	}
	require.NoError(t, err)
	b, err := protojson.Marshal(resp)
	require.NoError(t, err)
	return string(b)
}

// bkFind is FindCases by each of p's identifiers, as anna; it returns
// the case ids found.
func (e *routingEnv) bkFind(t *testing.T, p *bkPerson) []string {
	t.Helper()
	ctx, cancel := e.as(t, anna)
	defer cancel()
	var out []string
	for _, req := range []*routingv1.FindCasesRequest{
		{Key: &routingv1.FindCasesRequest_Email{Email: p.email}},
		{Key: &routingv1.FindCasesRequest_Phone{Phone: p.phone}},
		{Key: &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: p.pnr}},
	} {
		resp, err := e.rc.FindCases(ctx, req)
		require.NoError(t, err)
		for _, c := range resp.GetCases() {
			out = append(out, c.GetCaseId())
		}
	}
	return out
}

// bkAccess is SubjectAccess by p's identity number and by e-mail, as the
// DPO, as JSON.
func (e *routingEnv) bkAccess(t *testing.T, p *bkPerson) (int, string) {
	t.Helper()
	rt := retentionv1.NewRetentionServiceClient(e.conns[0])
	ctx, cancel := e.as(t, dina)
	defer cancel()
	n := 0
	var all strings.Builder
	for _, key := range []*retentionv1.SubjectKey{
		{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: p.pnr}},
		{Key: &retentionv1.SubjectKey_Email{Email: p.email}},
	} {
		resp, err := rt.SubjectAccess(ctx, &retentionv1.SubjectAccessRequest{Subject: key, Purpose: "registerutdrag"})
		require.NoError(t, err)
		n = max(n, len(resp.GetCases()))
		b, err := protojson.Marshal(resp)
		require.NoError(t, err)
		all.Write(b)
	}
	return n, all.String()
}

// bkReceipts lists the ledger, as the DPO.
func (e *routingEnv) bkReceipts(t *testing.T) map[string]retLedger {
	t.Helper()
	return (&retEnv{routingEnv: e, rt: retentionv1.NewRetentionServiceClient(e.conns[0])}).waitLedger(t, time.Second, "receipts", func(map[string]retLedger) bool { return true })
}

// bkWaitLedger waits for the ledger to show what done accepts.
func (e *routingEnv) bkWaitLedger(t *testing.T, what string, done func(map[string]retLedger) bool) map[string]retLedger {
	t.Helper()
	return (&retEnv{routingEnv: e, rt: retentionv1.NewRetentionServiceClient(e.conns[0])}).waitLedger(t, 30*time.Second, what, done)
}

// bkConfig writes a configuration file for a CLI command on dataDir.
func bkConfig(t *testing.T, dataDir, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kontakt.yaml")
	cfg := fmt.Sprintf("data_dir: %s\nlisten: %s\nmetrics_listen: \"\"\n%s%s", dataDir, freeAddr(t), routingQueues, extra)
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

// bkCopyDir copies a directory as cp -a does (a journal rsynced to
// another host).
func bkCopyDir(t *testing.T, src, dst string) {
	t.Helper()
	out, err := exec.Command("cp", "-a", src, dst).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// TestBackupRestoreKeepsErasure: a backup taken while serving, then an
// erasure of person A, then the plan redacting a chat transcript and
// deleting a letter (41 days on); the old backup restored into a new data
// directory with the shred journal (its live copy lost with the host, an
// rsynced copy given): GetCase, FindCases and SubjectAccess show nothing
// of what was erased or culled, a raw read of the new data directory finds
// none of A's values, blind-index tokens or wrapped keys, person B's data
// is all there, and `kontakt retention verify` passes with every receipt
// the lost installation had, to the same chain head.
func TestBackupRestoreKeepsErasure(t *testing.T) {
	start := time.Now()
	phase := func(name string) { t.Logf("%-40s at %s", name, time.Since(start).Round(time.Millisecond)) }
	run := randHex(t, 3)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	journal := filepath.Join(dir, "journal") // other storage, in production
	plan := bkPlan(t)

	a := bkNewPerson(t, "a", run, 1961)
	b := bkNewPerson(t, "b", run, 1972)
	c := bkNewPerson(t, "c", run, 1983) // a chat: transcript culled after 30 days
	d := bkNewPerson(t, "d", run, 1990) // a letter: deleted after 40 days

	// ---- Day 0: register, work, back up while serving ----
	bkUseJournal(t, journal)
	e := startRouting(t, dataDir, bkRetention(plan, 0))
	for i, p := range []*bkPerson{a, b} {
		in := &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "bygglov",
			Subject: p.marker(run, "subject"), Description: p.marker(run, "text"),
			Contact: &intakev1.Contact{Name: p.name, Phone: p.phone, Email: p.email, IdentityNumber: dashed(p.pnr)},
		}
		in.Attachments = []*intakev1.AttachmentInput{{Name: p.marker(run, "file") + ".pdf", ContentType: "application/pdf", SizeBytes: 2048, AttachmentId: fmt.Sprintf("bk-%s-%d", run, i)}}
		id := e.bkRegister(t, p, in)
		e.bkWork(t, p, id, run)
	}
	// A second case of A's, by e-mail.
	e.bkRegister(t, a, &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Channel: casev1.Channel_CHANNEL_EMAIL, Category: "bemotande",
		Subject: a.marker(run, "subject2"), Description: a.marker(run, "text2"),
		Contact: &intakev1.Contact{Name: a.name, Email: a.email, IdentityNumber: a.pnr},
	})
	cID := e.bkRegister(t, c, &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Channel: casev1.Channel_CHANNEL_CHAT, Category: "bemotande",
		Subject: "Chatt", ChatTranscript: "Invånare: " + c.marker(run, "chat"),
		Contact: &intakev1.Contact{Name: c.name, Email: c.email},
	})
	dID := e.bkRegister(t, d, &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_BREV, Channel: casev1.Channel_CHANNEL_LETTER, Category: "ovrigt",
		Subject: "Brev", Description: d.marker(run, "text"),
		Contact: &intakev1.Contact{Name: d.name, IdentityNumber: d.pnr},
	})
	phase("day 0: registered and worked")

	// What someone with the old data directory and the master key could
	// use to find A: tokens and wrapped keys.
	blind := bkBlind(t, filepath.Join(dataDir, "master.key"))
	aTokens, bTokens := bkTokens(t, blind, a), bkTokens(t, blind, b)
	aKeys := e.bkWrappedKeys(t, a.ids)
	bKeys := e.bkWrappedKeys(t, b.ids)
	require.GreaterOrEqual(t, len(aKeys), 5, "A's cases have keys for contact, identity, free text, attachments and answers")
	require.NotEmpty(t, bKeys)
	for _, id := range a.ids {
		require.Contains(t, e.bkView(t, id), a.name, "A's data is readable before the erasure")
	}
	n, _ := e.bkAccess(t, a)
	require.Equal(t, 2, n, "the register extract finds both of A's cases")

	backupDir := filepath.Join(dir, "backups", "day0")
	keysDir := filepath.Join(dir, "vault", "day0.keys") // apart from the data
	bkStart := time.Now()
	code, out := runKontakt(t, "backup", "--config", e.k.Config, "--out", backupDir, "--keys-out", keysDir)
	require.Equal(t, 0, code, "kontakt backup while serving:\n%s", out)
	require.Contains(t, out, "written by the running server", out)
	t.Logf("online backup in %s:\n%s", time.Since(bkStart).Round(time.Millisecond), bkStdout(out))
	require.NoFileExists(t, filepath.Join(backupDir, "streams", bkKeyStream, "backup.json"), "the data keys are not in the data part")
	require.FileExists(t, filepath.Join(keysDir, "streams", bkKeyStream, "backup.json"))
	found, files := retScanDir(t, backupDir, "", aKeys)
	for _, k := range aKeys {
		require.Empty(t, found[k], "a wrapped data key is in the data part")
	}
	for _, f := range files {
		base := filepath.Base(f)
		require.False(t, base == "master.key" || strings.HasSuffix(base, ".nk") || strings.HasSuffix(base, ".pem"), "%s is in the backup", f)
	}
	phase("day 0: backed up")

	// ---- Still day 0: A asks to be erased ----
	rt := retentionv1.NewRetentionServiceClient(e.conns[0])
	dctx, dcancel := e.as(t, dina)
	erased, err := rt.EraseSubject(dctx, &retentionv1.EraseSubjectRequest{
		Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: a.pnr}}, Reason: "begäran om radering, art. 17",
	})
	dcancel()
	require.NoError(t, err)
	require.Len(t, erased.GetOutcomes(), 2)
	for _, o := range erased.GetOutcomes() {
		require.True(t, o.GetErased(), "%v", o)
	}
	e.bkWaitLedger(t, "A's erasure", func(m map[string]retLedger) bool {
		return m[a.ids[0]].fullyRedacted() && len(m[a.ids[1]][retKindRedaction]) == 1
	})
	require.NoError(t, e.k.Stop(t))
	phase("day 0: A erased")

	// ---- Day 41: the plan culls the chat transcript, deletes the letter ----
	e = startRouting(t, dataDir, bkRetention(plan, 41))
	live := e.bkWaitLedger(t, "the chat's transcript redacted and the letter deleted", func(m map[string]retLedger) bool {
		return len(m[cID][retKindRedaction]) == 1 && len(m[dID][retKindDeletion]) == 1
	})
	require.Equal(t, []string{"freetext"}, live[cID].redactedClasses())
	require.Empty(t, live[b.ids[0]], "B's case is not due")
	require.Empty(t, e.bkView(t, dID), "the letter is deleted")
	require.NotContains(t, e.bkView(t, cID), c.field["chat"], "the chat transcript is culled")
	liveCount, liveHead := e.bkVerify(t)
	require.GreaterOrEqual(t, liveCount, 5, "A's two erasures, the chat's redaction, the letter's redaction and deletion")
	require.NoError(t, e.k.Stop(t))
	// The journal as a copy elsewhere would hold it, and the host lost:
	// its data directory and its own journal are gone.
	journalCopy := filepath.Join(dir, "elsewhere", "journal")
	require.NoError(t, os.MkdirAll(filepath.Dir(journalCopy), 0o700))
	bkCopyDir(t, journal, journalCopy)
	masterKey := filepath.Join(dir, "vault", "master.key") // from the vault
	bkCopyDir(t, filepath.Join(dataDir, "master.key"), masterKey)
	require.NoError(t, os.RemoveAll(dataDir))
	require.NoError(t, os.RemoveAll(journal))
	phase("day 41: culled; host lost")

	// ---- Restore the day-0 backup on a new host ----
	newData := filepath.Join(dir, "restored", "data")
	newJournal := filepath.Join(dir, "restored", "journal")
	bkUseJournal(t, newJournal)
	restoreCfg := bkConfig(t, newData, bkRetention(plan, 0))
	// A data directory that is not empty is never restored into.
	require.NoError(t, os.MkdirAll(newData, 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(newData, "keep.txt"), []byte("x"), 0o600))
	code, out = runKontakt(t, "restore", "--config", restoreCfg, "--from", backupDir, "--keys-from", keysDir, "--journal", journalCopy, "--master-key-file", masterKey)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "never overwrites a data directory", out)
	require.NoError(t, os.Remove(filepath.Join(newData, "keep.txt")))
	// Without the journal the restore is refused: the journal must reach
	// from the backup to now.
	code, out = runKontakt(t, "restore", "--config", restoreCfg, "--from", backupDir, "--keys-from", keysDir, "--master-key-file", masterKey)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "--journal", out)
	empty, err := os.ReadDir(newData)
	require.NoError(t, err)
	require.Empty(t, empty, "a refused restore left files behind")
	require.NoError(t, os.RemoveAll(newJournal))
	rsStart := time.Now()
	code, out = runKontakt(t, "restore", "--config", restoreCfg, "--from", backupDir, "--keys-from", keysDir, "--journal", journalCopy, "--master-key-file", masterKey)
	require.Equal(t, 0, code, "kontakt restore:\n%s", out)
	t.Logf("restore in %s:\n%s", time.Since(rsStart).Round(time.Millisecond), bkStdout(out))
	require.Contains(t, out, "events appended again", out)
	merged, err := shredjournal.Read(newJournal)
	require.NoError(t, err)
	copied, err := shredjournal.Read(journalCopy)
	require.NoError(t, err)
	require.Len(t, merged, len(copied), "the new live journal holds the copy's entries")
	phase("restored")

	// ---- Start the restored installation (at real time: its own sweeper
	// would cull nothing yet) ----
	e = startRouting(t, newData, bkRetention(plan, 0))
	for i, id := range a.ids {
		view := e.bkView(t, id)
		require.NotEmpty(t, view, "A's case %d is kept (only its personal data is erased)", i)
		for _, m := range a.markers {
			require.NotContains(t, view, m, "GetCase of A's case %d shows A's data", i)
		}
		require.Contains(t, view, "DATA_CLASS_CONTACT_DETAILS", "GetCase says the contact details were redacted")
	}
	require.Empty(t, e.bkFind(t, a), "FindCases finds A's cases by A's identifiers")
	n, extract := e.bkAccess(t, a)
	require.Zero(t, n, "SubjectAccess finds A's cases: %s", extract)
	for _, m := range a.markers {
		require.NotContains(t, extract, m)
	}
	// The plan's work after the backup stands too.
	require.Empty(t, e.bkView(t, dID), "the deleted letter is back")
	cView := e.bkView(t, cID)
	require.NotContains(t, cView, c.field["chat"], "the culled chat transcript is back")
	require.Contains(t, cView, c.name, "the chat's contact details (90 days) are kept")
	// B's data came back whole: the backup is worth having.
	bView := e.bkView(t, b.ids[0])
	for _, m := range []string{b.name, b.email, b.field["subject"], b.field["text"], b.answer[0], b.notes[0]} {
		require.Contains(t, bView, m, "B's case lost %s", m)
	}
	require.Equal(t, []string{b.ids[0], b.ids[0], b.ids[0]}, e.bkFind(t, b), "FindCases by B's e-mail, phone and identity number")
	n, extract = e.bkAccess(t, b)
	require.Equal(t, 1, n)
	require.Contains(t, extract, b.name)
	// Every receipt, to the same chain head.
	count, head := e.bkVerify(t)
	require.Equal(t, liveCount, count, "receipts before the loss and after the restore")
	require.Equal(t, liveHead, head, "the restored ledger ends where the lost one did")
	restored := e.bkReceipts(t)
	require.Equal(t, live, restored, "the same receipts, case by case")
	require.NoError(t, e.k.Stop(t))
	phase("restored: checked through the API")

	// A raw read of everything the new installation keeps.
	var needles []string
	needles = append(needles, a.markers...)
	needles = append(needles, aTokens...)
	needles = append(needles, aKeys...)
	controls := append(append([]string{}, bTokens...), bKeys...)
	controls = append(controls, b.numbers[0])
	for _, scan := range []string{newData, newJournal} {
		found, files := retScanDir(t, scan, "", append(append([]string{}, needles...), controls...))
		for _, nd := range needles {
			require.Empty(t, found[nd], "%q of A's is on disk under %s", bkShort(nd), scan)
		}
		if scan == newData {
			require.Contains(t, files, filepath.Join(newData, "routing", "readmodel.tokens.db"))
			require.Contains(t, files, filepath.Join(newData, "retention", "index.tokens.db"))
			for _, ctl := range controls {
				require.NotEmpty(t, found[ctl], "control %q of B's is on no file: the scan does not see the store", bkShort(ctl))
			}
		}
	}
	phase("restored: raw scan clean")
}

// bkStdout keeps the lines of a command's output that are not progress
// bars.
func bkStdout(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, "%|") && !strings.Contains(l, "\r") && strings.TrimSpace(l) != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// bkShort shortens a needle for a message (a wrapped key is binary).
func bkShort(s string) string {
	if len(s) > 16 || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r > '~' }) {
		return fmt.Sprintf("%x…", []byte(s[:min(8, len(s))]))
	}
	return s
}

// TestNaiveRestoreOfADataDirectoryIsRefused is the issue's own attempt:
// a tar of the stopped data directory, an erasure, the tar put back. The
// shred journal lives outside the data directory (as production requires),
// so kontakt sees that the directory is older than its journal and will
// not serve it, naming `kontakt restore`; before, the erased person's data
// came back readable with no receipt and no warning.
func TestNaiveRestoreOfADataDirectoryIsRefused(t *testing.T) {
	run := randHex(t, 3)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	bkUseJournal(t, filepath.Join(dir, "journal"))
	a := bkNewPerson(t, "a", run, 1958)

	e := startRouting(t, dataDir, "retention:\n  sweep_interval: 200ms\n")
	aID := e.bkRegister(t, a, &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "bygglov",
		Subject: "Fråga", Description: a.marker(run, "text"),
		Contact: &intakev1.Contact{Name: a.name, Phone: a.phone, IdentityNumber: a.pnr},
	})
	require.NoError(t, e.k.Stop(t))
	tarball := filepath.Join(dir, "data.tar")
	out, err := exec.Command("tar", "-C", dir, "-cf", tarball, "data").CombinedOutput()
	require.NoError(t, err, "%s", out)

	e = startRouting(t, dataDir, "retention:\n  sweep_interval: 200ms\n")
	rt := retentionv1.NewRetentionServiceClient(e.conns[0])
	ctx, cancel := e.as(t, dina)
	_, err = rt.EraseSubject(ctx, &retentionv1.EraseSubjectRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: a.pnr}}, Reason: "begäran"})
	cancel()
	require.NoError(t, err)
	e.bkWaitLedger(t, "the erasure's receipt", func(m map[string]retLedger) bool { return m[aID].fullyRedacted() })
	require.NotContains(t, e.bkView(t, aID), a.name)
	require.NoError(t, e.k.Stop(t))

	require.NoError(t, os.RemoveAll(dataDir))
	out, err = exec.Command("tar", "-C", dir, "-xf", tarball).CombinedOutput()
	require.NoError(t, err, "%s", out)

	k, err := start(t, dataDir, Options{ExtraConfig: routingQueues + "retention:\n  sweep_interval: 200ms\n"})
	if err == nil {
		// It served the old directory: show what came back.
		e := inspectRouting(t, k)
		view := e.bkView(t, aID)
		count, _ := e.bkVerify(t)
		t.Fatalf("the restored tar was served: A's data readable again (name in GetCase: %v), %d receipts in the ledger, no warning", strings.Contains(view, a.name), count)
	}
	output := k.stderr.String()
	require.Contains(t, output, "older than the shred journal", output)
	require.Contains(t, output, "kontakt restore", output)
	require.NotContains(t, output, a.name)
}

// inspectRouting connects the routing tests' clients to a started binary.
func inspectRouting(t *testing.T, k *Kontakt) *routingEnv {
	t.Helper()
	ie := &intakeEnv{k: k}
	for range 4 {
		ie.conns = append(ie.conns, k.Dial(t))
	}
	e := &routingEnv{intakeEnv: ie, tokens: map[string]string{}}
	e.rc = routingv1.NewRoutingServiceClient(ie.conns[0])
	e.ic = intakev1.NewIntakeServiceClient(ie.conns[0])
	return e
}

// TestRestoreAfterACrashBetweenJournalAndKeys: the server dies (SIGKILL)
// after the shred journal has synced an erasure and before the keys are
// destroyed, the one moment the journal-first order is for. The journal
// names the keys and holds no receipt yet; restoring an older backup with
// it destroys the keys and writes the receipt, and the crashed directory
// itself recovers on its own too.
func TestRestoreAfterACrashBetweenJournalAndKeys(t *testing.T) {
	run := randHex(t, 3)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	journal := filepath.Join(dir, "journal")
	plan := bkPlan(t)
	a := bkNewPerson(t, "a", run, 1966)
	b := bkNewPerson(t, "b", run, 1977)

	bkUseJournal(t, journal)
	e := startRouting(t, dataDir, bkRetention(plan, 0))
	for _, p := range []*bkPerson{a, b} {
		id := e.bkRegister(t, p, &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "bygglov",
			Subject: "Fråga", Description: p.marker(run, "text"),
			Contact: &intakev1.Contact{Name: p.name, Phone: p.phone, Email: p.email, IdentityNumber: p.pnr},
		})
		e.bkWork(t, p, id, run)
	}
	aKeys := e.bkWrappedKeys(t, a.ids)
	require.NotEmpty(t, aKeys)
	backupDir := filepath.Join(dir, "backup")
	code, out := runKontakt(t, "backup", "--config", e.k.Config, "--out", backupDir)
	require.Equal(t, 0, code, out)
	require.NoError(t, e.k.Stop(t))

	// The crash: the development fault kills the process right after the
	// journal synced the erasure.
	t.Setenv(bkFaultEnv, "kill-after-journal")
	e = startRouting(t, dataDir, bkRetention(plan, 0))
	t.Setenv(bkFaultEnv, "")
	rt := retentionv1.NewRetentionServiceClient(e.conns[0])
	ctx, cancel := e.as(t, dina)
	_, err := rt.EraseSubject(ctx, &retentionv1.EraseSubjectRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: a.email}}, Reason: "begäran"})
	cancel()
	require.NoError(t, err, "the erasure is appended before the projector acts on it")
	select {
	case werr := <-e.k.done:
		e.k.done <- werr
		var ee *exec.ExitError
		require.ErrorAs(t, werr, &ee)
		ws, ok := ee.Sys().(syscall.WaitStatus)
		require.True(t, ok)
		require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "kontakt ended with %v, not SIGKILL", werr)
	case <-time.After(30 * time.Second):
		t.Fatal("the fault did not kill kontakt after the erasure was journaled")
	}
	entries, err := shredjournal.Read(journal)
	require.NoError(t, err)
	var events, receipts int
	for _, en := range entries {
		switch en.Kind {
		case shredjournal.KindEvent:
			require.Equal(t, a.ids[0], en.Event.Stream)
			require.NotEmpty(t, en.Event.Destroy)
			events++
		case shredjournal.KindReceipt:
			receipts++
		}
	}
	require.Equal(t, 1, events, "the journal names the erasure")
	require.Zero(t, receipts, "the crash came before the receipt")
	// What the keys of the crashed directory were: still there.
	crashed := filepath.Join(dir, "crashed")
	bkCopyDir(t, dataDir, crashed)
	found, _ := retScanDir(t, crashed, "", aKeys)
	require.NotEmpty(t, found[aKeys[0]], "the crash came before the keys were destroyed")

	// Restore the backup with the journal.
	newData := filepath.Join(dir, "restored")
	newJournal := filepath.Join(dir, "restored-journal")
	bkUseJournal(t, newJournal)
	restoreCfg := bkConfig(t, newData, bkRetention(plan, 0))
	code, out = runKontakt(t, "restore", "--config", restoreCfg, "--from", backupDir, "--journal", journal, "--master-key-file", filepath.Join(dataDir, "master.key"))
	require.Equal(t, 0, code, out)
	t.Logf("restore:\n%s", bkStdout(out))
	e = startRouting(t, newData, bkRetention(plan, 0))
	require.NotContains(t, e.bkView(t, a.ids[0]), a.name)
	require.Empty(t, e.bkFind(t, a))
	require.Contains(t, e.bkView(t, b.ids[0]), b.name)
	led := e.bkReceipts(t)
	require.True(t, led[a.ids[0]].fullyRedacted(), "the erasure's receipt: %s", retDescribe(led))
	count, _ := e.bkVerify(t)
	require.Equal(t, 1, count)
	require.NoError(t, e.k.Stop(t))
	found, _ = retScanDir(t, newData, "", aKeys)
	for _, k := range aKeys {
		require.Empty(t, found[k], "a wrapped key of A's is in the restored store")
	}

	// The crashed directory, started again, finishes the erasure itself.
	bkUseJournal(t, journal)
	e = startRouting(t, dataDir, bkRetention(plan, 0))
	e.bkWaitLedger(t, "the erasure's receipt after the crash", func(m map[string]retLedger) bool { return m[a.ids[0]].fullyRedacted() })
	require.NotContains(t, e.bkView(t, a.ids[0]), a.name)
	require.NoError(t, e.k.Stop(t))
}

// TestRestoreKeepsLaterKeyGenerationsDestroyed: a case answered again
// after the plan culled its personal data holds that answer under a key
// of the next generation (issue 14, point 2), which the plan destroys in
// its own time. A backup taken while that answer was readable, restored
// with the journal after its redaction, does not bring it back: the
// generation-1 key and the answer are in the backup, and the journal's
// replay destroys the key before anything serves.
func TestRestoreKeepsLaterKeyGenerationsDestroyed(t *testing.T) {
	run := randHex(t, 3)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	plan := bkPlan(t)
	a := bkNewPerson(t, "a", run, 1969)

	bkUseJournal(t, filepath.Join(dir, "journal"))
	e := startRouting(t, dataDir, bkRetention(plan, 0))
	id := e.bkRegister(t, a, &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Channel: casev1.Channel_CHANNEL_PHONE, Category: "bemotande",
		Subject: "Klagomål", Description: a.marker(run, "text"),
		Contact: &intakev1.Contact{Name: a.name, Phone: a.phone, IdentityNumber: a.pnr},
	})
	e.bkWork(t, a, id, run)
	require.NoError(t, e.k.Stop(t))

	// Day 91: culled; the complaint is answered again (generation 1), and
	// backed up so.
	e = startRouting(t, dataDir, bkRetention(plan, 91))
	e.bkWaitLedger(t, "the cull", func(m map[string]retLedger) bool { return m[id].fullyRedacted() })
	ctx, cancel := e.as(t, sara)
	later := a.marker(run, "lateranswer")
	_, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: id, Answer: "Nytt svar: " + later})
	cancel()
	require.NoError(t, err, "the complaint is answerable after the cull")
	require.True(t, eventually(10*time.Second, func() bool { return strings.Contains(e.bkView(t, id), later) }), "the new answer is not shown")
	laterKeys := e.bkWrappedKeys(t, []string{id + ".answer.1"})
	require.Len(t, laterKeys, 1, "the new answer's key is of generation 1")
	backupDir := filepath.Join(dir, "backup")
	code, out := runKontakt(t, "backup", "--config", e.k.Config, "--out", backupDir)
	require.Equal(t, 0, code, out)
	found, _ := retScanDir(t, backupDir+".keys", "", laterKeys)
	require.NotEmpty(t, found[laterKeys[0]], "the backup's keys part holds the generation-1 key")
	require.NoError(t, e.k.Stop(t))

	// Day 182: the new answer's own period is over.
	e = startRouting(t, dataDir, bkRetention(plan, 182))
	e.bkWaitLedger(t, "the new answer's redaction", func(m map[string]retLedger) bool { return len(m[id][retKindRedaction]) >= 2 })
	require.True(t, eventually(10*time.Second, func() bool { return !strings.Contains(e.bkView(t, id), later) }), "the new answer is still shown")
	liveCount, liveHead := e.bkVerify(t)
	require.NoError(t, e.k.Stop(t))

	newData := filepath.Join(dir, "restored")
	bkUseJournal(t, filepath.Join(dir, "restored-journal"))
	cfg := bkConfig(t, newData, bkRetention(plan, 91))
	code, out = runKontakt(t, "restore", "--config", cfg, "--from", backupDir, "--journal", filepath.Join(dir, "journal"), "--master-key-file", filepath.Join(dataDir, "master.key"))
	require.Equal(t, 0, code, out)
	// Started at day 91, where the answer is not due yet: only the
	// journal can have removed it.
	e = startRouting(t, newData, bkRetention(plan, 91))
	view := e.bkView(t, id)
	require.NotEmpty(t, view)
	for _, m := range a.markers {
		require.NotContains(t, view, m)
	}
	count, head := e.bkVerify(t)
	require.Equal(t, liveCount, count)
	require.Equal(t, liveHead, head)
	require.NoError(t, e.k.Stop(t))
	found, _ = retScanDir(t, newData, "", append(append([]string{}, a.markers...), laterKeys...))
	for _, n := range append(append([]string{}, a.markers...), laterKeys...) {
		require.Empty(t, found[n], "%q of A's is on disk", bkShort(n))
	}
}
