package readmodel

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/tokenindex"
	"github.com/kontakt-se/kontakt/services/routing/app"
	"github.com/kontakt-se/kontakt/services/routing/domain"
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
	changes []app.Change
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
	// scrub drops the texts of stored history entries of these classes
	// (a redaction of DATA_CLASS_ANSWER or DATA_CLASS_FREE_TEXT; see
	// app.TextClass).
	scrub      map[casev1.DataClass]bool
	newHistory []app.HistoryEntry
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
		orig, err := decodeRecord(id, v)
		if err != nil {
			return nil, fmt.Errorf("case %s: %w", id, err)
		}
		p.orig = orig
		p.cur = orig.clone()
	}
	b.cases[id] = p
	b.order = append(b.order, p)
	return p, nil
}

// rowOf is a record's row, or nil for no record.
func (b *batch) rowOf(r *record) *app.CaseRow {
	if r == nil {
		return nil
	}
	row := r.row(b.s.sla)
	return &row
}

// apply applies one event to its case in memory: the domain's fold
// (domain.Case.Apply) decides what the event does to the case, the
// record's copies take the sealed data it carries, and the event's
// history entry and change are noted. The event comes decoded once by
// the projection runner (pkg/projection); an unknown type has no message.
func (b *batch) apply(e *projection.Event) error {
	ev := &e.Recorded
	if ev.Stream == "" {
		return fmt.Errorf("%w: event without stream", ErrMalformedEvent)
	}
	p, err := b.get(ev.Stream)
	if err != nil {
		return err
	}
	if e.Deleted() {
		b.drop(p, ev.Recorded.UTC(), ev.Position)
		return nil
	}
	// A newer writer's event (no message): the fold skips it, but its
	// revision is the case's revision now.
	msg := e.Message
	if p.cur == nil {
		if _, ok := msg.(*casev1.CaseRegistered); !ok {
			// No such case (never registered here, or deleted): nothing
			// to update.
			return nil
		}
	}
	if del, ok := msg.(*casev1.CaseDeleted); ok {
		b.drop(p, domain.TimeOf(del.GetDeletedAt(), ev.Recorded), ev.Position)
		return nil
	}
	if reg, ok := msg.(*casev1.CaseRegistered); ok && reg.GetCaseId() != ev.Stream {
		return nil // Another case's registration, refused like the fold refuses another case's events.
	}

	r := p.cur
	if r == nil {
		r = &record{}
	}
	queueBefore := r.c.Queue
	if err := r.c.Apply(domain.Event{Type: ev.Type, Message: msg, Revision: uint64(ev.Revision), Recorded: ev.Recorded}); err != nil {
		// The fold refuses only what cannot be one case (a second
		// registration, an event of another case), which the event store
		// never holds. A projection cannot refuse the log (retrying would
		// stop it at the event for good), so the event is skipped and the
		// case stays as the fold had it.
		return nil
	}
	p.cur = r
	stale, scrub := r.copies.apply(msg)
	p.tokensStale = p.tokensStale || stale
	for _, class := range scrub {
		if p.scrub == nil {
			p.scrub = map[casev1.DataClass]bool{}
		}
		p.scrub[class] = true
		for i := range p.newHistory {
			if app.TextClass(p.newHistory[i].Kind) == class {
				p.newHistory[i].Text = nil
			}
		}
	}
	entry, shown := historyEntry(msg, ev.Recorded)
	if !shown {
		return nil
	}
	p.newHistory = append(p.newHistory, entry)
	if b.notify {
		after := r.row(b.s.sla)
		prev := ""
		if queueBefore != after.Queue {
			prev = queueBefore
		}
		b.changes = append(b.changes, app.Change{Kind: entry.Kind, Queue: after.Queue, PreviousQueue: prev, Row: after, At: entry.At, Position: ev.Position})
	}
	return nil
}

// drop removes a deleted case with everything the read model holds of
// it.
func (b *batch) drop(p *pending, at time.Time, pos eventstore.Position) {
	if p.cur == nil {
		return
	}
	if b.notify {
		row := p.cur.row(b.s.sla)
		b.changes = append(b.changes, app.Change{Kind: app.ChangeDeleted, Queue: row.Queue, Row: row, At: at, Position: pos})
	}
	p.cur = nil
	p.tokensStale = false
	p.wipeHistory = true
	p.scrub = nil
	p.newHistory = nil
}

// historyEntry says how an event shows in its case's history and change
// feed, and whether it shows at all: retention's preservation and
// archiving, and events this build does not know, do not.
func historyEntry(msg proto.Message, recorded time.Time) (app.HistoryEntry, bool) {
	var e app.HistoryEntry
	switch m := msg.(type) {
	case *casev1.CaseRegistered:
		e = app.HistoryEntry{Kind: app.ChangeRegistered, Actor: m.GetRegisteredBy(), At: domain.TimeOf(m.GetRegisteredAt(), recorded)}
		if n := m.GetRefersToCaseNumber(); n != "" {
			e.Detail = "refers to " + n
		}
	case *casev1.CaseRouted:
		e = app.HistoryEntry{Kind: app.ChangeRouted, At: domain.TimeOf(m.GetRoutedAt(), recorded), Queue: m.GetQueue()}
	case *casev1.CaseAssigned:
		e = app.HistoryEntry{Kind: app.ChangeAssigned, Actor: m.GetAssignedBy(), At: domain.TimeOf(m.GetAssignedAt(), recorded)}
	case *casev1.CaseReleased:
		e = app.HistoryEntry{Kind: app.ChangeReleased, Actor: m.GetReleasedBy(), At: domain.TimeOf(m.GetReleasedAt(), recorded)}
	case *casev1.CaseMoved:
		e = app.HistoryEntry{Kind: app.ChangeMoved, Actor: m.GetMovedBy(), At: domain.TimeOf(m.GetMovedAt(), recorded), Queue: m.GetToQueue()}
	case *casev1.CaseForwarded:
		e = app.HistoryEntry{Kind: app.ChangeForwarded, Actor: m.GetForwardedBy(), At: domain.TimeOf(m.GetForwardedAt(), recorded), Text: sealed(m.GetComment()), Queue: m.GetToQueue()}
	case *casev1.CaseAnswered:
		e = app.HistoryEntry{Kind: app.ChangeAnswered, Actor: m.GetAnsweredBy(), At: domain.TimeOf(m.GetAnsweredAt(), recorded), Text: sealed(m.GetAnswer())}
	case *casev1.NoteAdded:
		e = app.HistoryEntry{Kind: app.ChangeNoted, Actor: m.GetAuthor(), At: domain.TimeOf(m.GetAddedAt(), recorded), Text: sealed(m.GetText())}
	case *casev1.CaseClosed:
		e = app.HistoryEntry{Kind: app.ChangeClosed, Actor: m.GetClosedBy(), At: domain.TimeOf(m.GetClosedAt(), recorded), Resolution: m.GetResolution()}
	case *casev1.CaseReopened:
		e = app.HistoryEntry{Kind: app.ChangeReopened, Actor: m.GetReopenedBy(), At: domain.TimeOf(m.GetReopenedAt(), recorded)}
	case *casev1.HoldPlaced:
		e = app.HistoryEntry{Kind: app.ChangeHeld, Actor: m.GetPlacedBy(), At: domain.TimeOf(m.GetPlacedAt(), recorded)}
	case *casev1.HoldReleased:
		e = app.HistoryEntry{Kind: app.ChangeHeld, Actor: m.GetReleasedBy(), At: domain.TimeOf(m.GetReleasedAt(), recorded)}
	case *casev1.PersonalDataRedacted:
		e = app.HistoryEntry{Kind: app.ChangeRedacted, At: domain.TimeOf(m.GetRedactedAt(), recorded)}
	case *casev1.PersonalDataRectified:
		e = app.HistoryEntry{Kind: app.ChangeRectified, Actor: m.GetRectifiedBy(), At: domain.TimeOf(m.GetRectifiedAt(), recorded)}
	case *casev1.MailSent:
		e = app.HistoryEntry{Kind: app.ChangeMailSent, Actor: mailActor, At: domain.TimeOf(m.GetSentAt(), recorded), Detail: mailKindName(m.GetKind())}
	case *casev1.CaseMessageReceived:
		e = app.HistoryEntry{Kind: app.ChangeMessageReceived, Actor: mailActor, At: domain.TimeOf(m.GetReceivedAt(), recorded), Text: sealed(m.GetText()), Detail: m.GetMatchedBy()}
	case *casev1.MailFailed:
		e = app.HistoryEntry{Kind: app.ChangeMailFailed, Actor: mailActor, At: domain.TimeOf(m.GetFailedAt(), recorded), Detail: mailKindName(m.GetKind()) + ": " + m.GetReason()}
	default:
		return app.HistoryEntry{}, false
	}
	return e, true
}

// mailActor is who acts in a mail entry: the e-mail channel, no person.
const mailActor = "mail"

// mailKindName is a mail kind as a history entry names it.
func mailKindName(k casev1.MailKind) string {
	switch k {
	case casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT:
		return "acknowledgement"
	case casev1.MailKind_MAIL_KIND_ANSWER:
		return "answer"
	default:
		return "mail"
	}
}

// loadDelta is a change of one queue's counters.
type loadDelta struct {
	open, unassigned int64
	byStatus         map[casev1.CaseStatus]int64
}

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
		} else {
			v, err := encodeRecord(p.cur)
			if err != nil {
				return err
			}
			if err := cases.Put([]byte(p.id), v); err != nil {
				return err
			}
		}
		orig, cur := b.rowOf(p.orig), b.rowOf(p.cur)
		if err := b.writeNumber(p.id, orig, cur); err != nil {
			return err
		}
		if err := b.writeOpenIndexes(orig, cur); err != nil {
			return err
		}
		if err := b.writeUnrouted(p.id, orig, cur); err != nil {
			return err
		}
		if err := b.writeHistory(p); err != nil {
			return err
		}
		for _, c := range [...]struct {
			row  *app.CaseRow
			sign int64
		}{{orig, -1}, {cur, 1}} {
			if c.row == nil || !c.row.IsOpen() {
				continue
			}
			d := deltas[c.row.Queue]
			d.open += c.sign
			if c.row.IsUnassigned() {
				d.unassigned += c.sign
			}
			if d.byStatus == nil {
				d.byStatus = map[casev1.CaseStatus]int64{}
			}
			d.byStatus[c.row.Status] += c.sign
			deltas[c.row.Queue] = d
		}
	}
	return b.writeLoads(deltas)
}

// computeTokens asks the Tokenizer for a case's tokens.
func (b *batch) computeTokens(ctx context.Context, id string, r *record) ([]string, error) {
	if b.s.tokenizer == nil || (r.contact == nil && r.identity == nil) {
		return nil, nil
	}
	tokens, err := b.s.tokenizer.Tokens(ctx, id, r.contact, r.identity)
	if err != nil {
		return nil, err
	}
	tokens = slices.DeleteFunc(slices.Clone(tokens), func(t string) bool { return t == "" })
	slices.Sort(tokens)
	return slices.Compact(tokens), nil
}

func (b *batch) writeNumber(id string, orig, cur *app.CaseRow) error {
	numbers := b.tx.Bucket([]byte(bucketNumbers))
	var before, after string
	if orig != nil {
		before = orig.Number
	}
	if cur != nil {
		after = cur.Number
	}
	if before == after {
		return nil
	}
	if before != "" && string(numbers.Get([]byte(before))) == id {
		if err := numbers.Delete([]byte(before)); err != nil {
			return err
		}
	}
	if after != "" {
		return numbers.Put([]byte(after), []byte(id))
	}
	return nil
}

// openEntry is a case's entry in one open-case index.
type openEntry struct{ key, value []byte }

func openEntries(r *app.CaseRow) (age, due openEntry, ok bool, err error) {
	if r == nil || !r.IsOpen() {
		return age, due, false, nil
	}
	v, err := encodeOpenEntry(r.Type, r.Channel)
	if err != nil {
		return age, due, false, err
	}
	if age.key, err = openIndexKey(r.Queue, r.RegisteredAt, r.CaseID); err != nil {
		return age, due, false, err
	}
	if due.key, err = openIndexKey(r.Queue, r.DueAt, r.CaseID); err != nil {
		return age, due, false, err
	}
	age.value, due.value = v, v
	return age, due, true, nil
}

func (b *batch) writeOpenIndexes(orig, cur *app.CaseRow) error {
	oldAge, oldDue, hadOld, err := openEntries(orig)
	if err != nil {
		return err
	}
	newAge, newDue, hasNew, err := openEntries(cur)
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

// unrouted reports whether a case waits for the router.
func unrouted(r *app.CaseRow) bool {
	return r != nil && r.Status == casev1.CaseStatus_CASE_STATUS_REGISTERED
}

// writeUnrouted keeps the case's entry in the unrouted index.
func (b *batch) writeUnrouted(id string, orig, cur *app.CaseRow) error {
	was, is := unrouted(orig), unrouted(cur)
	switch {
	case is && !was:
		return b.tx.Bucket([]byte(bucketUnrouted)).Put([]byte(id), []byte{})
	case was && !is:
		return b.tx.Bucket([]byte(bucketUnrouted)).Delete([]byte(id))
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
		tokens, err := b.computeTokens(ctx, p.id, p.cur)
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

// writeHistory writes the case's history as it is after the batch: the
// stored entries (none after a deletion, without texts after a redaction
// of the answer class) and the batch's new ones. New entries are appended
// to the stored bytes as they are: a repeated field's encoding is the
// concatenation of its elements', so the value is the one encoding the
// whole history at once would give (and a rebuild writes the same bytes),
// and an event costs its own entry, not a decoding of all before it.
func (b *batch) writeHistory(p *pending) error {
	if !p.wipeHistory && len(p.scrub) == 0 && len(p.newHistory) == 0 {
		return nil
	}
	bk := b.tx.Bucket([]byte(bucketHistory))
	key := []byte(p.id)
	if p.cur == nil {
		return bk.Delete(key)
	}
	var stored []byte
	if v := bk.Get(key); v != nil && !p.wipeHistory {
		stored = v
		if len(p.scrub) > 0 {
			entries, err := decodeHistory(p.id, v)
			if err != nil {
				return fmt.Errorf("history of case %s: %w", p.id, err)
			}
			for i := range entries {
				if p.scrub[app.TextClass(entries[i].Kind)] {
					entries[i].Text = nil
				}
			}
			if stored, err = encodeHistory(p.id, entries); err != nil {
				return err
			}
		}
	}
	added, err := encodeHistory(p.id, p.newHistory)
	if err != nil {
		return err
	}
	v := append(slices.Clip(stored), added...)
	if len(v) == 0 {
		return bk.Delete(key)
	}
	return bk.Put(key, v)
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
		if l.OpenByStatus == nil {
			l.OpenByStatus = map[casev1.CaseStatus]int64{}
		}
		for st, n := range d.byStatus {
			l.OpenByStatus[st] += n
			switch {
			case l.OpenByStatus[st] < 0:
				return fmt.Errorf("load of queue %q: %d open cases of status %s: %w", q, l.OpenByStatus[st], st, errCorrupt)
			case l.OpenByStatus[st] == 0:
				delete(l.OpenByStatus, st)
			}
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
		v, err := encodeLoad(l)
		if err != nil {
			return err
		}
		if err := loads.Put([]byte(q), v); err != nil {
			return err
		}
	}
	return nil
}
