package readmodel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/tokenindex"
)

// Event types the read model applies: the full protobuf names of the case
// events (a test checks them against the descriptors).
const (
	typeCaseRegistered        = "kontakt.case.v1.CaseRegistered"
	typeCaseRouted            = "kontakt.case.v1.CaseRouted"
	typeCaseMoved             = "kontakt.case.v1.CaseMoved"
	typeCaseAssigned          = "kontakt.case.v1.CaseAssigned"
	typeCaseReleased          = "kontakt.case.v1.CaseReleased"
	typeNoteAdded             = "kontakt.case.v1.NoteAdded"
	typeCaseForwarded         = "kontakt.case.v1.CaseForwarded"
	typeCaseAnswered          = "kontakt.case.v1.CaseAnswered"
	typeCaseClosed            = "kontakt.case.v1.CaseClosed"
	typeCaseReopened          = "kontakt.case.v1.CaseReopened"
	typePersonalDataRedacted  = "kontakt.case.v1.PersonalDataRedacted"
	typePersonalDataRectified = "kontakt.case.v1.PersonalDataRectified"
	typeHoldPlaced            = "kontakt.case.v1.HoldPlaced"
	typeHoldReleased          = "kontakt.case.v1.HoldReleased"
	typeCaseDeleted           = "kontakt.case.v1.CaseDeleted"
)

// batch applies events to cases in memory and writes each touched case
// once, at flush. The indexes, tokens and queue counters are then derived
// from the difference between a case as it was stored when the
// transaction began and as it is at the end, which keeps them consistent
// with the rows by construction, whatever the events did in between, and
// makes a rebuild (large batches) write exactly what incremental
// projection (small batches) wrote.
type batch struct {
	s       *Store
	tx      *bolt.Tx
	notify  bool
	cases   map[string]*pending
	order   []*pending // first touch order, so flush is deterministic
	changes []Change
	// tokens are the batch's changes to the token file: a case's new
	// tokens, or nil for a case whose tokens go (see writeTokens).
	tokens []tokenChange
}

// tokenChange replaces a case's blind-index tokens; drop removes them
// all (the case is deleted).
type tokenChange struct {
	caseID string
	tokens []string
	drop   bool
}

// pending is one case touched by the batch.
type pending struct {
	id string
	// orig is the record as stored when the transaction began; nil if
	// there was none.
	orig *record
	// cur is the record now; nil if the case is (now) deleted.
	cur *record
	// tokensStale is set when the sealed contact or identity changed, so
	// the tokens must be computed again.
	tokensStale bool
	// wipeHistory drops the stored history (deletion).
	wipeHistory bool
	// scrubAnswers drops the texts of stored history entries (redaction
	// of DATA_CLASS_ANSWER).
	scrubAnswers bool
	newHistory   []HistoryEntry
}

func newBatch(s *Store, tx *bolt.Tx, notify bool) *batch {
	return &batch{s: s, tx: tx, notify: notify, cases: make(map[string]*pending)}
}

// get returns the pending state of a case, loading it on first touch.
func (b *batch) get(id string) (*pending, error) {
	if p, ok := b.cases[id]; ok {
		return p, nil
	}
	p := &pending{id: id}
	if v := b.tx.Bucket([]byte(bucketCases)).Get([]byte(id)); v != nil {
		orig, err := decodeRecord(v)
		if err != nil {
			return nil, fmt.Errorf("case %s: %w", id, err)
		}
		p.orig = orig
		p.cur = orig.cloneRecord()
	}
	b.cases[id] = p
	b.order = append(b.order, p)
	return p, nil
}

func (r *record) cloneRecord() *record {
	c := &record{CaseRow: r.CaseRow.clone()}
	c.holds = slices.Clone(r.holds)
	c.forwarded = r.forwarded
	return c
}

// sealed returns s, or nil when it carries nothing: a case without such
// data (a visit has no contact details) stores no empty copy.
func sealed(s *casev1.SealedPersonalData) *casev1.SealedPersonalData {
	if s == nil || (s.GetKeyId() == "" && len(s.GetCiphertext()) == 0) {
		return nil
	}
	return &casev1.SealedPersonalData{KeyId: s.GetKeyId(), Ciphertext: s.GetCiphertext()}
}

// eventTime is when the event says it happened, or when the store
// recorded it.
func eventTime(ts *timestamppb.Timestamp, ev *eventstore.RecordedEvent) time.Time {
	if ts != nil && ts.IsValid() && (ts.GetSeconds() != 0 || ts.GetNanos() != 0) {
		return ts.AsTime()
	}
	return ev.Recorded.UTC()
}

func decode(ev *eventstore.RecordedEvent, m proto.Message) error {
	if err := proto.Unmarshal(ev.Data, m); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedEvent, err)
	}
	return nil
}

// step is what one event did, for the change feed and the history.
type step struct {
	kind  string
	at    time.Time
	entry HistoryEntry
}

// apply applies one event to its case in memory.
func (b *batch) apply(ev *eventstore.RecordedEvent) error {
	if ev.Stream == "" {
		return fmt.Errorf("%w: event without stream", ErrMalformedEvent)
	}
	p, err := b.get(ev.Stream)
	if err != nil {
		return err
	}
	var before CaseRow
	if p.cur != nil {
		before = p.cur.CaseRow
	}

	var st step
	switch ev.Type {
	case eventstore.TypeStreamDeleted, typeCaseDeleted:
		if p.cur == nil {
			return nil
		}
		at := ev.Recorded.UTC()
		if ev.Type == typeCaseDeleted {
			m := &casev1.CaseDeleted{}
			if err := decode(ev, m); err != nil {
				return err
			}
			at = eventTime(m.GetDeletedAt(), ev)
		}
		b.change(ChangeDeleted, before.Queue, "", before, at, ev.Position)
		p.cur = nil
		p.tokensStale = false
		p.wipeHistory = true
		p.scrubAnswers = false
		p.newHistory = nil
		return nil
	case typeCaseRegistered:
		m := &casev1.CaseRegistered{}
		if err := decode(ev, m); err != nil {
			return err
		}
		st, err = b.register(p, ev, m)
	default:
		if p.cur == nil {
			// No such case (never registered here, or deleted): nothing
			// to update.
			return nil
		}
		st, err = b.update(p, ev)
	}
	if err != nil || st.kind == "" {
		return err
	}
	r := p.cur
	r.Revision = ev.Revision
	r.UpdatedAt = st.at
	st.entry.Kind = st.kind
	st.entry.At = st.at
	st.entry.Position = ev.Position
	p.newHistory = append(p.newHistory, st.entry)
	prev := ""
	if before.Queue != r.Queue {
		prev = before.Queue
	}
	b.change(st.kind, r.Queue, prev, r.CaseRow, st.at, ev.Position)
	return nil
}

func (b *batch) change(kind, queue, prev string, row CaseRow, at time.Time, pos eventstore.Position) {
	if !b.notify {
		return
	}
	b.changes = append(b.changes, Change{Kind: kind, Queue: queue, PreviousQueue: prev, Row: row.clone(), At: at, Position: pos})
}

func (b *batch) register(p *pending, ev *eventstore.RecordedEvent, m *casev1.CaseRegistered) (step, error) {
	at := eventTime(m.GetRegisteredAt(), ev)
	r := &record{CaseRow: CaseRow{
		CaseID:          ev.Stream,
		Number:          m.GetCaseNumber(),
		Type:            m.GetType(),
		Channel:         m.GetChannel(),
		Category:        m.GetCategory(),
		Status:          casev1.CaseStatus_CASE_STATUS_REGISTERED,
		RegisteredAt:    at,
		FreeText:        sealed(m.GetFreeText()),
		Contact:         sealed(m.GetContact()),
		Identity:        sealed(m.GetIdentity()),
		AttachmentNames: sealed(m.GetAttachmentNames()),
	}}
	if sla, ok := b.s.sla[r.Type]; ok {
		r.DueAt = at.Add(sla)
	}
	for _, a := range m.GetAttachments() {
		r.Attachments = append(r.Attachments, &casev1.Attachment{
			AttachmentId: a.GetAttachmentId(), ContentType: a.GetContentType(), SizeBytes: a.GetSizeBytes(),
		})
	}
	if p.cur != nil {
		// A second registration of one case id cannot happen; should it,
		// the later one wins, but the case keeps its holds.
		r.holds = p.cur.holds
		r.OnHold = p.cur.OnHold
	}
	p.cur = r
	p.tokensStale = true
	return step{kind: ChangeRegistered, at: at, entry: HistoryEntry{Actor: m.GetRegisteredBy()}}, nil
}

// update applies an event other than registration and deletion to an
// existing case. Event types it does not know leave the case as it is but
// for the revision, which commands compare with the stream's.
// settle sets the status of an open, routed case from who holds it, the
// same rule as the domain's fold: assigned, else forwarded, else queued.
func settle(r *record) {
	switch r.Status {
	case casev1.CaseStatus_CASE_STATUS_CLOSED, casev1.CaseStatus_CASE_STATUS_REGISTERED:
		return
	}
	switch {
	case r.Assignee != "":
		r.Status = casev1.CaseStatus_CASE_STATUS_ASSIGNED
	case r.forwarded:
		r.Status = casev1.CaseStatus_CASE_STATUS_FORWARDED
	default:
		r.Status = casev1.CaseStatus_CASE_STATUS_QUEUED
	}
}

func (b *batch) update(p *pending, ev *eventstore.RecordedEvent) (step, error) {
	r := p.cur
	switch ev.Type {
	case typeCaseRouted:
		m := &casev1.CaseRouted{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		r.Queue = m.GetQueue()
		r.Status = casev1.CaseStatus_CASE_STATUS_QUEUED
		r.Assignee = ""
		return step{kind: ChangeRouted, at: eventTime(m.GetRoutedAt(), ev), entry: HistoryEntry{Queue: r.Queue}}, nil

	case typeCaseAssigned:
		m := &casev1.CaseAssigned{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		r.Status = casev1.CaseStatus_CASE_STATUS_ASSIGNED
		r.Assignee = m.GetAssignee()
		return step{kind: ChangeAssigned, at: eventTime(m.GetAssignedAt(), ev), entry: HistoryEntry{Actor: m.GetAssignedBy(), Assignee: r.Assignee}}, nil

	case typeCaseReleased:
		m := &casev1.CaseReleased{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		r.Assignee = ""
		settle(p.cur)
		return step{kind: ChangeReleased, at: eventTime(m.GetReleasedAt(), ev), entry: HistoryEntry{Actor: m.GetReleasedBy()}}, nil

	case typeCaseMoved:
		m := &casev1.CaseMoved{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		// A move takes the case out of any forwarding and away from its
		// assignee, as the domain's fold does.
		r.Queue = m.GetToQueue()
		r.Assignee = ""
		r.ForwardedDepartment, r.ForwardedOfficer, p.cur.forwarded = "", "", false
		if r.Status == casev1.CaseStatus_CASE_STATUS_REGISTERED {
			r.Status = casev1.CaseStatus_CASE_STATUS_QUEUED
		}
		settle(p.cur)
		return step{kind: ChangeMoved, at: eventTime(m.GetMovedAt(), ev), entry: HistoryEntry{Actor: m.GetMovedBy(), Queue: r.Queue}}, nil

	case typeCaseForwarded:
		m := &casev1.CaseForwarded{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		if q := m.GetToQueue(); q != "" {
			r.Queue = q
		}
		r.Status = casev1.CaseStatus_CASE_STATUS_FORWARDED
		r.Assignee = ""
		r.ForwardedDepartment = m.GetToDepartment()
		r.ForwardedOfficer = m.GetToOfficer()
		p.cur.forwarded = true
		return step{kind: ChangeForwarded, at: eventTime(m.GetForwardedAt(), ev), entry: HistoryEntry{
			Actor: m.GetForwardedBy(), Text: sealed(m.GetComment()), Queue: m.GetToQueue(),
			Department: r.ForwardedDepartment, Officer: r.ForwardedOfficer,
		}}, nil

	case typeCaseAnswered:
		m := &casev1.CaseAnswered{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		return step{kind: ChangeAnswered, at: eventTime(m.GetAnsweredAt(), ev), entry: HistoryEntry{Actor: m.GetAnsweredBy(), Text: sealed(m.GetAnswer())}}, nil

	case typeNoteAdded:
		m := &casev1.NoteAdded{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		return step{kind: ChangeNoted, at: eventTime(m.GetAddedAt(), ev), entry: HistoryEntry{Actor: m.GetAuthor(), Text: sealed(m.GetText())}}, nil

	case typeCaseClosed:
		m := &casev1.CaseClosed{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		at := eventTime(m.GetClosedAt(), ev)
		r.Status = casev1.CaseStatus_CASE_STATUS_CLOSED
		r.Assignee = ""
		r.ClosedAt = at
		r.Resolution = m.GetResolution()
		return step{kind: ChangeClosed, at: at, entry: HistoryEntry{Actor: m.GetClosedBy(), Resolution: r.Resolution}}, nil

	case typeCaseReopened:
		m := &casev1.CaseReopened{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		// Back in the queue (or with the department it was forwarded to)
		// for anyone to take: whoever had it may be gone by now.
		r.Status = casev1.CaseStatus_CASE_STATUS_QUEUED
		r.Assignee = ""
		r.ClosedAt = time.Time{}
		settle(p.cur)
		r.Reopenings++
		return step{kind: ChangeReopened, at: eventTime(m.GetReopenedAt(), ev), entry: HistoryEntry{Actor: m.GetReopenedBy()}}, nil

	case typeHoldPlaced:
		m := &casev1.HoldPlaced{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		if !slices.Contains(r.holds, m.GetHoldId()) {
			r.holds = append(r.holds, m.GetHoldId())
		}
		r.OnHold = true
		return step{kind: ChangeHeld, at: eventTime(m.GetPlacedAt(), ev), entry: HistoryEntry{Actor: m.GetPlacedBy()}}, nil

	case typeHoldReleased:
		m := &casev1.HoldReleased{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		r.holds = slices.DeleteFunc(r.holds, func(h string) bool { return h == m.GetHoldId() })
		r.OnHold = len(r.holds) > 0
		return step{kind: ChangeHeld, at: eventTime(m.GetReleasedAt(), ev), entry: HistoryEntry{Actor: m.GetReleasedBy()}}, nil

	case typePersonalDataRedacted:
		m := &casev1.PersonalDataRedacted{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		for _, c := range m.GetDataClasses() {
			b.redact(p, c)
		}
		return step{kind: ChangeRedacted, at: eventTime(m.GetRedactedAt(), ev)}, nil

	case typePersonalDataRectified:
		m := &casev1.PersonalDataRectified{}
		if err := decode(ev, m); err != nil {
			return step{}, err
		}
		b.rectify(p, m.GetDataClass(), sealed(m.GetValue()))
		return step{kind: ChangeRectified, at: eventTime(m.GetRectifiedAt(), ev), entry: HistoryEntry{Actor: m.GetRectifiedBy()}}, nil
	}
	r.Revision = ev.Revision
	return step{}, nil
}

// redact drops the sealed copies of one data class and records it as
// redacted. Tokens are computed again from what is left, so the tokens
// that stood for the redacted values disappear with them.
func (b *batch) redact(p *pending, c casev1.DataClass) {
	r := p.cur
	switch c {
	case casev1.DataClass_DATA_CLASS_CONTACT_DETAILS:
		r.Contact = nil
		p.tokensStale = true
	case casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER:
		r.Identity = nil
		p.tokensStale = true
	case casev1.DataClass_DATA_CLASS_FREE_TEXT:
		r.FreeText = nil
	case casev1.DataClass_DATA_CLASS_ATTACHMENTS:
		r.AttachmentNames = nil
	case casev1.DataClass_DATA_CLASS_ANSWER:
		p.scrubAnswers = true
		for i := range p.newHistory {
			p.newHistory[i].Text = nil
		}
	default:
		return
	}
	if i, found := slices.BinarySearch(r.Redacted, c); !found {
		r.Redacted = slices.Insert(r.Redacted, i, c)
	}
}

// rectify replaces the sealed copy of one data class. Answer texts are
// not rectified as a class (the event does not say which text), so that
// class is left as it is.
func (b *batch) rectify(p *pending, c casev1.DataClass, v *casev1.SealedPersonalData) {
	r := p.cur
	switch c {
	case casev1.DataClass_DATA_CLASS_CONTACT_DETAILS:
		r.Contact = v
		p.tokensStale = true
	case casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER:
		r.Identity = v
		p.tokensStale = true
	case casev1.DataClass_DATA_CLASS_FREE_TEXT:
		r.FreeText = v
	case casev1.DataClass_DATA_CLASS_ATTACHMENTS:
		r.AttachmentNames = v
	default:
		return
	}
	if i, found := slices.BinarySearch(r.Redacted, c); found && v != nil {
		r.Redacted = slices.Delete(r.Redacted, i, i+1)
	}
}

// loadDelta is a change of one queue's counters.
type loadDelta struct{ open, unassigned int64 }

// flush writes every touched case, its index entries and history, and the
// queue counters, and collects its token changes (written by writeTokens).
func (b *batch) flush(ctx context.Context) error {
	cases := b.tx.Bucket([]byte(bucketCases))
	deltas := map[string]loadDelta{}
	for _, p := range b.order {
		if err := b.collectTokens(ctx, p); err != nil {
			return err
		}
		if p.cur == nil {
			if p.orig != nil {
				if err := cases.Delete([]byte(p.id)); err != nil {
					return err
				}
			}
		} else if err := cases.Put([]byte(p.id), encodeRecord(p.cur)); err != nil {
			return err
		}
		if err := b.writeNumber(p); err != nil {
			return err
		}
		if err := b.writeOpenIndexes(p); err != nil {
			return err
		}
		if err := b.writeHistory(p); err != nil {
			return err
		}
		for _, r := range []*record{p.orig, p.cur} {
			if r == nil || !r.IsOpen() {
				continue
			}
			sign := int64(1)
			if r == p.orig {
				sign = -1
			}
			d := deltas[r.Queue]
			d.open += sign
			if r.IsUnassigned() {
				d.unassigned += sign
			}
			deltas[r.Queue] = d
		}
	}
	return b.writeLoads(deltas)
}

// computeTokens asks the Tokenizer for a case's tokens.
func (b *batch) computeTokens(ctx context.Context, r *record) ([]string, error) {
	if b.s.tokenizer == nil || (r.Contact == nil && r.Identity == nil) {
		return nil, nil
	}
	tokens, err := b.s.tokenizer.Tokens(ctx, r.CaseID, r.Contact, r.Identity)
	if errors.Is(err, ErrSkipTokens) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	tokens = slices.DeleteFunc(slices.Clone(tokens), func(t string) bool { return t == "" })
	slices.Sort(tokens)
	return slices.Compact(tokens), nil
}

func (b *batch) writeNumber(p *pending) error {
	numbers := b.tx.Bucket([]byte(bucketNumbers))
	var before, after string
	if p.orig != nil {
		before = p.orig.Number
	}
	if p.cur != nil {
		after = p.cur.Number
	}
	if before == after {
		return nil
	}
	if before != "" && string(numbers.Get([]byte(before))) == p.id {
		if err := numbers.Delete([]byte(before)); err != nil {
			return err
		}
	}
	if after != "" {
		return numbers.Put([]byte(after), []byte(p.id))
	}
	return nil
}

// openEntry is a case's entry in one open-case index.
type openEntry struct{ key, value []byte }

func openEntries(r *record) (age, due openEntry, ok bool, err error) {
	if r == nil || !r.IsOpen() {
		return age, due, false, nil
	}
	v := openIndexValue(r.Type, r.Channel)
	if age.key, err = openIndexKey(r.Queue, r.RegisteredAt, r.CaseID); err != nil {
		return age, due, false, err
	}
	if due.key, err = openIndexKey(r.Queue, r.DueAt, r.CaseID); err != nil {
		return age, due, false, err
	}
	age.value, due.value = v, v
	return age, due, true, nil
}

func (b *batch) writeOpenIndexes(p *pending) error {
	oldAge, oldDue, hadOld, err := openEntries(p.orig)
	if err != nil {
		return err
	}
	newAge, newDue, hasNew, err := openEntries(p.cur)
	if err != nil {
		return err
	}
	for _, ix := range []struct {
		bucket   string
		old, new openEntry
	}{{bucketByAge, oldAge, newAge}, {bucketByDue, oldDue, newDue}} {
		bk := b.tx.Bucket([]byte(ix.bucket))
		if hadOld && hasNew && bytes.Equal(ix.old.key, ix.new.key) && bytes.Equal(ix.old.value, ix.new.value) {
			continue
		}
		if hadOld {
			if err := bk.Delete(ix.old.key); err != nil {
				return err
			}
		}
		if hasNew {
			if err := bk.Put(ix.new.key, ix.new.value); err != nil {
				return err
			}
		}
	}
	return nil
}

// collectTokens notes what the batch does to a case's tokens: new ones
// when its contact details or identity number changed, none when it is
// gone. A case that is gone is dropped even if this file never knew it,
// because the token file may be one batch ahead of this file after a
// crash (see writeTokens).
func (b *batch) collectTokens(ctx context.Context, p *pending) error {
	switch {
	case p.cur == nil:
		b.tokens = append(b.tokens, tokenChange{caseID: p.id, drop: true})
	case p.tokensStale:
		tokens, err := b.computeTokens(ctx, p.cur)
		if err != nil {
			return fmt.Errorf("blind-index tokens of case %s: %w", p.id, err)
		}
		b.tokens = append(b.tokens, tokenChange{caseID: p.id, tokens: tokens})
	}
	return nil
}

// writeTokens commits the batch's token changes to the token file. It
// runs before the batch's own transaction (and its checkpoint) commits,
// so a crash between the two leaves the token file ahead and the replay
// of the batch writes the same again; a token file behind the checkpoint
// could keep a redacted case's tokens for good. A removal is compacted
// out of the file before this returns (pkg/tokenindex).
func (b *batch) writeTokens() error {
	if len(b.tokens) == 0 {
		return nil
	}
	return b.s.tokens.Update(func(tx *tokenindex.Tx) error {
		for _, c := range b.tokens {
			var err error
			if c.drop {
				err = tx.Drop(c.caseID)
			} else {
				err = tx.Set(c.caseID, "", c.tokens)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *batch) writeHistory(p *pending) error {
	bk := b.tx.Bucket([]byte(bucketHistory))
	if (p.wipeHistory || p.scrubAnswers) && p.orig != nil {
		prefix, err := historyPrefix(p.id)
		if err != nil {
			return err
		}
		// Collect first: changing a bucket under a live cursor can make
		// the cursor skip entries.
		var keys, values [][]byte
		c := bk.Cursor()
		for k, v := c.Seek(prefix); hasPrefix(k, prefix); k, v = c.Next() {
			if p.wipeHistory {
				keys = append(keys, slices.Clone(k))
				continue
			}
			h, err := decodeHistory(v)
			if err != nil {
				return fmt.Errorf("history of case %s: %w", p.id, err)
			}
			if h.Text != nil {
				h.Text = nil
				keys = append(keys, slices.Clone(k))
				values = append(values, encodeHistory(&h))
			}
		}
		for i, k := range keys {
			var err error
			if p.wipeHistory {
				err = bk.Delete(k)
			} else {
				err = bk.Put(k, values[i])
			}
			if err != nil {
				return err
			}
		}
	}
	for i := range p.newHistory {
		h := &p.newHistory[i]
		k, err := historyKey(p.id, h.Position)
		if err != nil {
			return err
		}
		if err := bk.Put(k, encodeHistory(h)); err != nil {
			return err
		}
	}
	return nil
}

// writeLoads adds the deltas to the queue counters and finds each touched
// queue's oldest open case, the first entry of the queue in the age index.
func (b *batch) writeLoads(deltas map[string]loadDelta) error {
	loads := b.tx.Bucket([]byte(bucketLoads))
	byAge := b.tx.Bucket([]byte(bucketByAge)).Cursor()
	for _, q := range slices.Sorted(maps.Keys(deltas)) {
		d := deltas[q]
		l, err := decodeLoad(q, loads.Get([]byte(q)))
		if err != nil {
			return fmt.Errorf("load of queue %q: %w", q, err)
		}
		l.Open += d.open
		l.Unassigned += d.unassigned
		if l.Open < 0 || l.Unassigned < 0 || l.Unassigned > l.Open {
			return fmt.Errorf("load of queue %q: counters went out of range (%d open, %d unassigned): %w", q, l.Open, l.Unassigned, errCorrupt)
		}
		if l.Open == 0 {
			if err := loads.Delete([]byte(q)); err != nil {
				return err
			}
			continue
		}
		prefix, err := queuePrefix(q)
		if err != nil {
			return err
		}
		k, _ := byAge.Seek(prefix)
		if !hasPrefix(k, prefix) {
			return fmt.Errorf("load of queue %q: %d open cases but none in the age index: %w", q, l.Open, errCorrupt)
		}
		l.OldestOpenAt = decodeSortableTime(k[len(prefix) : len(prefix)+8])
		if err := loads.Put([]byte(q), encodeLoad(l)); err != nil {
			return err
		}
	}
	return nil
}
