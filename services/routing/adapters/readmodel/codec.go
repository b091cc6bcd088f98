package readmodel

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/routing/adapters/readmodel/internal/rowpb"
	"github.com/kontakt-se/kontakt/services/routing/app"
	"github.com/kontakt-se/kontakt/services/routing/domain"
)

// The stored values are the messages of the private proto
// services/routing/proto/kontakt/routing/readmodel/v1/readmodel.proto,
// generated into internal/rowpb (`make generate`). They are marshalled
// deterministically, so a rebuild writes the very bytes incremental
// projection wrote (the tests compare the files). A file written with
// another layout is rebuilt, never read (schemaVersion).

var errCorrupt = errors.New("corrupt stored value")

var deterministic = proto.MarshalOptions{Deterministic: true}

func marshal(m proto.Message) ([]byte, error) {
	b, err := deterministic.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return b, nil
}

func unmarshal(b []byte, m proto.Message) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: %s: %w", errCorrupt, m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

// nanos stores a time as Unix nanoseconds; the zero time is absent.
func nanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

func fromNanos(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.Unix(0, *n).UTC()
}

func encodeRecord(r *record) ([]byte, error) {
	c := &r.c
	caseID := c.ID
	p := &rowpb.CaseRecord{
		Number: c.Number, Type: c.Type, Channel: c.Channel, Category: c.Category, Mailbox: c.Mailbox,
		RegisteredAtUnixNanos: nanos(c.RegisteredAt), Status: c.Status, Routed: c.Routed,
		Queue: c.Queue, Assignee: c.Assignee,
		ForwardedToDepartment: c.ForwardedToDepartment, ForwardedToOfficer: c.ForwardedToOfficer,
		Forwarded: c.Forwarded, ClosedAtUnixNanos: nanos(c.ClosedAt), Resolution: c.Resolution,
		Reopenings: uint32(c.Reopenings), Holds: slices.Sorted(maps.Keys(c.Holds)), Revision: c.Version,
		Redacted:        r.redacted,
		FreeText:        encodeSealed(caseID, seal.ClassFreeText, r.freeText),
		Contact:         encodeSealed(caseID, seal.ClassContact, r.contact),
		Identity:        encodeSealed(caseID, seal.ClassIdentity, r.identity),
		AttachmentNames: encodeSealed(caseID, seal.ClassAttachments, r.attachmentNames),
		Attachments:     r.attachments,
	}
	return marshal(p)
}

func decodeRecord(caseID string, b []byte) (*record, error) {
	p := &rowpb.CaseRecord{}
	if err := unmarshal(b, p); err != nil {
		return nil, err
	}
	r := &record{c: domain.Case{
		ID: caseID, Number: p.GetNumber(), Type: p.GetType(), Channel: p.GetChannel(), Category: p.GetCategory(), Mailbox: p.GetMailbox(),
		RegisteredAt: fromNanos(p.RegisteredAtUnixNanos), Status: p.GetStatus(), Routed: p.GetRouted(),
		Facts: caseaccess.Facts{
			Queue: p.GetQueue(), Assignee: p.GetAssignee(),
			ForwardedToDepartment: p.GetForwardedToDepartment(), ForwardedToOfficer: p.GetForwardedToOfficer(),
		},
		Forwarded: p.GetForwarded(), ClosedAt: fromNanos(p.ClosedAtUnixNanos), Resolution: p.GetResolution(),
		Reopenings: int(p.GetReopenings()), Version: p.GetRevision(),
	}}
	if holds := p.GetHolds(); len(holds) > 0 {
		r.c.Holds = make(map[string]bool, len(holds))
		for _, h := range holds {
			r.c.Holds[h] = true
		}
	}
	r.redacted = p.GetRedacted()
	r.attachments = p.GetAttachments()
	var err error
	for _, s := range []struct {
		class seal.Class
		from  *rowpb.Sealed
		to    **casev1.SealedPersonalData
	}{
		{seal.ClassFreeText, p.GetFreeText(), &r.freeText},
		{seal.ClassContact, p.GetContact(), &r.contact},
		{seal.ClassIdentity, p.GetIdentity(), &r.identity},
		{seal.ClassAttachments, p.GetAttachmentNames(), &r.attachmentNames},
	} {
		if *s.to, err = decodeSealed(caseID, s.class, s.from); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// encodeSealed leaves out a key id that pkg/seal derives from the case,
// the class and the generation; any other is kept as it is.
func encodeSealed(caseID string, class seal.Class, s *casev1.SealedPersonalData) *rowpb.Sealed {
	if s == nil {
		return nil
	}
	p := &rowpb.Sealed{Ciphertext: s.GetCiphertext()}
	keyID := s.GetKeyId()
	if id, c, gen, err := seal.ParseKeyID(keyID); err == nil && id == caseID && c == class {
		if derived, err := seal.KeyID(caseID, class, gen); err == nil && derived == keyID {
			p.Generation = gen
			return p
		}
	}
	p.KeyId = &keyID
	return p
}

func decodeSealed(caseID string, class seal.Class, p *rowpb.Sealed) (*casev1.SealedPersonalData, error) {
	if p == nil {
		return nil, nil
	}
	s := &casev1.SealedPersonalData{Ciphertext: p.GetCiphertext()}
	if p.KeyId != nil {
		s.KeyId = p.GetKeyId()
		return s, nil
	}
	keyID, err := seal.KeyID(caseID, class, p.GetGeneration())
	if err != nil {
		return nil, fmt.Errorf("%w: key id of case %s: %w", errCorrupt, caseID, err)
	}
	s.KeyId = keyID
	return s, nil
}

// historyKinds maps the change kinds that show in a case's history to
// their stored numbers, and back.
var historyKinds = map[string]rowpb.HistoryKind{
	app.ChangeRegistered:      rowpb.HistoryKind_HISTORY_KIND_REGISTERED,
	app.ChangeRouted:          rowpb.HistoryKind_HISTORY_KIND_ROUTED,
	app.ChangeAssigned:        rowpb.HistoryKind_HISTORY_KIND_ASSIGNED,
	app.ChangeReleased:        rowpb.HistoryKind_HISTORY_KIND_RELEASED,
	app.ChangeMoved:           rowpb.HistoryKind_HISTORY_KIND_MOVED,
	app.ChangeForwarded:       rowpb.HistoryKind_HISTORY_KIND_FORWARDED,
	app.ChangeAnswered:        rowpb.HistoryKind_HISTORY_KIND_ANSWERED,
	app.ChangeNoted:           rowpb.HistoryKind_HISTORY_KIND_NOTED,
	app.ChangeClosed:          rowpb.HistoryKind_HISTORY_KIND_CLOSED,
	app.ChangeReopened:        rowpb.HistoryKind_HISTORY_KIND_REOPENED,
	app.ChangeRedacted:        rowpb.HistoryKind_HISTORY_KIND_REDACTED,
	app.ChangeRectified:       rowpb.HistoryKind_HISTORY_KIND_RECTIFIED,
	app.ChangeHeld:            rowpb.HistoryKind_HISTORY_KIND_HELD,
	app.ChangeMailSent:        rowpb.HistoryKind_HISTORY_KIND_MAIL_SENT,
	app.ChangeMailFailed:      rowpb.HistoryKind_HISTORY_KIND_MAIL_FAILED,
	app.ChangeMessageReceived: rowpb.HistoryKind_HISTORY_KIND_MESSAGE_RECEIVED,
}

var historyKindNames = func() map[rowpb.HistoryKind]string {
	m := make(map[rowpb.HistoryKind]string, len(historyKinds))
	for name, k := range historyKinds {
		m[k] = name
	}
	return m
}()

func encodeHistory(caseID string, entries []app.HistoryEntry) ([]byte, error) {
	p := &rowpb.History{Entries: make([]*rowpb.HistoryEntry, 0, len(entries))}
	for _, h := range entries {
		kind, ok := historyKinds[h.Kind]
		if !ok {
			return nil, fmt.Errorf("history of case %s: no stored kind for %q", caseID, h.Kind)
		}
		p.Entries = append(p.Entries, &rowpb.HistoryEntry{
			Kind: kind, Actor: h.Actor, AtUnixNanos: nanos(h.At),
			Text: encodeSealed(caseID, seal.ClassAnswer, h.Text), Queue: h.Queue, Resolution: h.Resolution, Detail: h.Detail,
		})
	}
	return marshal(p)
}

func decodeHistory(caseID string, b []byte) ([]app.HistoryEntry, error) {
	p := &rowpb.History{}
	if err := unmarshal(b, p); err != nil {
		return nil, err
	}
	out := make([]app.HistoryEntry, 0, len(p.GetEntries()))
	for _, e := range p.GetEntries() {
		kind, ok := historyKindNames[e.GetKind()]
		if !ok {
			return nil, fmt.Errorf("%w: history kind %d", errCorrupt, e.GetKind())
		}
		text, err := decodeSealed(caseID, seal.ClassAnswer, e.GetText())
		if err != nil {
			return nil, err
		}
		out = append(out, app.HistoryEntry{
			Kind: kind, Actor: e.GetActor(), At: fromNanos(e.AtUnixNanos),
			Text: text, Queue: e.GetQueue(), Resolution: e.GetResolution(), Detail: e.GetDetail(),
		})
	}
	return out, nil
}

func encodeLoad(l app.QueueLoad) ([]byte, error) {
	p := &rowpb.QueueLoad{Open: l.Open, Unassigned: l.Unassigned, OldestOpenAtUnixNanos: nanos(l.OldestOpenAt)}
	if len(l.OpenByStatus) > 0 {
		p.OpenByStatus = make(map[int32]int64, len(l.OpenByStatus))
		for st, n := range l.OpenByStatus {
			p.OpenByStatus[int32(st)] = n
		}
	}
	return marshal(p)
}

// decodeLoad decodes a queue's counters; no value is a queue without
// open cases.
func decodeLoad(queue string, b []byte) (app.QueueLoad, error) {
	p := &rowpb.QueueLoad{}
	if err := unmarshal(b, p); err != nil {
		return app.QueueLoad{}, err
	}
	l := app.QueueLoad{Queue: queue, Open: p.GetOpen(), Unassigned: p.GetUnassigned(), OldestOpenAt: fromNanos(p.OldestOpenAtUnixNanos)}
	if len(p.GetOpenByStatus()) > 0 {
		l.OpenByStatus = make(map[casev1.CaseStatus]int64, len(p.GetOpenByStatus()))
		for st, n := range p.GetOpenByStatus() {
			l.OpenByStatus[casev1.CaseStatus(st)] = n
		}
	}
	return l, nil
}

// encodeOpenEntry is an open-case index entry's value: what ListQueue
// filters by, so filtering reads no case record.
func encodeOpenEntry(t casev1.CaseType, ch casev1.Channel) ([]byte, error) {
	return marshal(&rowpb.OpenEntry{Type: t, Channel: ch})
}
