package readmodel

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// The stored values are protobuf wire format, written by hand with
// protowire instead of generated code: the schema is private to this
// package, the encoding is deterministic (so a rebuild writes the very
// same bytes as incremental projection, which the tests compare), and
// decoding skips unknown fields, so a newer binary's rows stay readable.
// Field numbers below are part of the file format: never reuse one.

// record is what the cases bucket holds per case: the row plus what only
// the projector needs.
type record struct {
	CaseRow
	// holds are the ids of the holds in place.
	holds []string
	// forwarded says a forwarding is in force (also one to a queue with
	// no department), which decides the status after a release or a
	// reopening exactly as the domain's fold does.
	forwarded bool
}

const (
	fCaseID              = 1
	fNumber              = 2
	fType                = 3
	fChannel             = 4
	fCategory            = 5
	fQueue               = 6
	fStatus              = 7
	fAssignee            = 8
	fRegisteredAt        = 9
	fDueAt               = 10
	fClosedAt            = 11
	fUpdatedAt           = 12
	fForwardedDepartment = 13
	fForwardedOfficer    = 14
	fFreeText            = 15
	fContact             = 16
	fIdentity            = 17
	fAttachmentNames     = 18
	fAttachments         = 19
	fRedacted            = 20
	fRevision            = 21
	fReopenings          = 22
	fHolds               = 23
	fResolution          = 25
	fForwarded           = 26
	// Field 24 held the blind-index tokens up to schema 2; they live in
	// the token file now (pkg/tokenindex). Never reuse it.
)

const (
	hKind       = 1
	hActor      = 2
	hAt         = 3
	hText       = 4
	hQueue      = 5
	hAssignee   = 6
	hDepartment = 7
	hOfficer    = 8
	hResolution = 9
)

const (
	lOpen       = 1
	lUnassigned = 2
	lOldest     = 3
)

var errCorrupt = errors.New("corrupt stored value")

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendEnum(b []byte, num protowire.Number, v int32) []byte {
	return appendUint(b, num, uint64(int64(v)))
}

// appendTime stores a time as zig-zag Unix nanoseconds; the zero time is
// left out, so it decodes as the zero time again.
func appendTime(b []byte, num protowire.Number, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, protowire.EncodeZigZag(t.UnixNano()))
}

func appendSealed(b []byte, num protowire.Number, s *casev1.SealedPersonalData) []byte {
	if s == nil {
		return b
	}
	var m []byte
	m = appendString(m, 1, s.GetKeyId())
	if c := s.GetCiphertext(); len(c) > 0 {
		m = protowire.AppendTag(m, 2, protowire.BytesType)
		m = protowire.AppendBytes(m, c)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func appendAttachment(b []byte, num protowire.Number, a *casev1.Attachment) []byte {
	var m []byte
	m = appendString(m, 1, a.GetAttachmentId())
	m = appendString(m, 2, a.GetContentType())
	m = appendUint(m, 3, uint64(a.GetSizeBytes()))
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func encodeRecord(r *record) []byte {
	b := make([]byte, 0, 256)
	b = appendString(b, fCaseID, r.CaseID)
	b = appendString(b, fNumber, r.Number)
	b = appendEnum(b, fType, int32(r.Type))
	b = appendEnum(b, fChannel, int32(r.Channel))
	b = appendString(b, fCategory, r.Category)
	b = appendString(b, fQueue, r.Queue)
	b = appendEnum(b, fStatus, int32(r.Status))
	b = appendString(b, fAssignee, r.Assignee)
	b = appendTime(b, fRegisteredAt, r.RegisteredAt)
	b = appendTime(b, fDueAt, r.DueAt)
	b = appendTime(b, fClosedAt, r.ClosedAt)
	b = appendTime(b, fUpdatedAt, r.UpdatedAt)
	b = appendString(b, fForwardedDepartment, r.ForwardedDepartment)
	b = appendString(b, fForwardedOfficer, r.ForwardedOfficer)
	b = appendSealed(b, fFreeText, r.FreeText)
	b = appendSealed(b, fContact, r.Contact)
	b = appendSealed(b, fIdentity, r.Identity)
	b = appendSealed(b, fAttachmentNames, r.AttachmentNames)
	for _, a := range r.Attachments {
		b = appendAttachment(b, fAttachments, a)
	}
	for _, c := range r.Redacted {
		b = protowire.AppendTag(b, fRedacted, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(c)))
	}
	b = appendUint(b, fRevision, uint64(r.Revision))
	b = appendUint(b, fReopenings, uint64(r.Reopenings))
	for _, h := range r.holds {
		b = protowire.AppendTag(b, fHolds, protowire.BytesType)
		b = protowire.AppendString(b, h)
	}
	b = appendEnum(b, fResolution, int32(r.Resolution))
	if r.forwarded {
		b = appendUint(b, fForwarded, 1)
	}
	return b
}

// field is one decoded field: its number, and either a varint or bytes.
type field struct {
	num   protowire.Number
	typ   protowire.Type
	v     uint64
	bytes []byte
}

// fields walks the top-level fields of a protowire message. Fields of a
// type this package never writes are skipped.
func fields(b []byte, fn func(f field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %w", errCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.bytes, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: %w", errCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.VarintType && typ != protowire.BytesType {
			continue
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func decodeTime(v uint64) time.Time {
	return time.Unix(0, protowire.DecodeZigZag(v)).UTC()
}

func decodeSealed(b []byte) (*casev1.SealedPersonalData, error) {
	s := &casev1.SealedPersonalData{}
	err := fields(b, func(f field) error {
		switch f.num {
		case 1:
			s.KeyId = string(f.bytes)
		case 2:
			s.Ciphertext = append([]byte(nil), f.bytes...)
		}
		return nil
	})
	return s, err
}

func decodeAttachment(b []byte) (*casev1.Attachment, error) {
	a := &casev1.Attachment{}
	err := fields(b, func(f field) error {
		switch f.num {
		case 1:
			a.AttachmentId = string(f.bytes)
		case 2:
			a.ContentType = string(f.bytes)
		case 3:
			a.SizeBytes = int64(f.v)
		}
		return nil
	})
	return a, err
}

func decodeRecord(b []byte) (*record, error) {
	r := &record{}
	err := fields(b, func(f field) error {
		var err error
		switch f.num {
		case fCaseID:
			r.CaseID = string(f.bytes)
		case fNumber:
			r.Number = string(f.bytes)
		case fType:
			r.Type = casev1.CaseType(int32(f.v))
		case fChannel:
			r.Channel = casev1.Channel(int32(f.v))
		case fCategory:
			r.Category = string(f.bytes)
		case fQueue:
			r.Queue = string(f.bytes)
		case fStatus:
			r.Status = casev1.CaseStatus(int32(f.v))
		case fAssignee:
			r.Assignee = string(f.bytes)
		case fRegisteredAt:
			r.RegisteredAt = decodeTime(f.v)
		case fDueAt:
			r.DueAt = decodeTime(f.v)
		case fClosedAt:
			r.ClosedAt = decodeTime(f.v)
		case fUpdatedAt:
			r.UpdatedAt = decodeTime(f.v)
		case fForwardedDepartment:
			r.ForwardedDepartment = string(f.bytes)
		case fForwardedOfficer:
			r.ForwardedOfficer = string(f.bytes)
		case fFreeText:
			r.FreeText, err = decodeSealed(f.bytes)
		case fContact:
			r.Contact, err = decodeSealed(f.bytes)
		case fIdentity:
			r.Identity, err = decodeSealed(f.bytes)
		case fAttachmentNames:
			r.AttachmentNames, err = decodeSealed(f.bytes)
		case fAttachments:
			var a *casev1.Attachment
			a, err = decodeAttachment(f.bytes)
			r.Attachments = append(r.Attachments, a)
		case fRedacted:
			r.Redacted = append(r.Redacted, casev1.DataClass(int32(f.v)))
		case fRevision:
			r.Revision = eventstore.Revision(f.v)
		case fReopenings:
			r.Reopenings = int(f.v)
		case fHolds:
			r.holds = append(r.holds, string(f.bytes))
		case fResolution:
			r.Resolution = casev1.Resolution(int32(f.v))
		case fForwarded:
			r.forwarded = f.v != 0
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	r.OnHold = len(r.holds) > 0
	return r, nil
}

func encodeHistory(h *HistoryEntry) []byte {
	b := make([]byte, 0, 64)
	b = appendString(b, hKind, h.Kind)
	b = appendString(b, hActor, h.Actor)
	b = appendTime(b, hAt, h.At)
	b = appendSealed(b, hText, h.Text)
	b = appendString(b, hQueue, h.Queue)
	b = appendString(b, hAssignee, h.Assignee)
	b = appendString(b, hDepartment, h.Department)
	b = appendString(b, hOfficer, h.Officer)
	b = appendEnum(b, hResolution, int32(h.Resolution))
	return b
}

func decodeHistory(b []byte) (HistoryEntry, error) {
	var h HistoryEntry
	err := fields(b, func(f field) error {
		var err error
		switch f.num {
		case hKind:
			h.Kind = string(f.bytes)
		case hActor:
			h.Actor = string(f.bytes)
		case hAt:
			h.At = decodeTime(f.v)
		case hText:
			h.Text, err = decodeSealed(f.bytes)
		case hQueue:
			h.Queue = string(f.bytes)
		case hAssignee:
			h.Assignee = string(f.bytes)
		case hDepartment:
			h.Department = string(f.bytes)
		case hOfficer:
			h.Officer = string(f.bytes)
		case hResolution:
			h.Resolution = casev1.Resolution(int32(f.v))
		}
		return err
	})
	return h, err
}

func encodeLoad(l Load) []byte {
	var b []byte
	b = appendUint(b, lOpen, uint64(l.Open))
	b = appendUint(b, lUnassigned, uint64(l.Unassigned))
	b = appendTime(b, lOldest, l.OldestOpenAt)
	return b
}

func decodeLoad(queue string, b []byte) (Load, error) {
	l := Load{Queue: queue}
	err := fields(b, func(f field) error {
		switch f.num {
		case lOpen:
			l.Open = int64(f.v)
		case lUnassigned:
			l.Unassigned = int64(f.v)
		case lOldest:
			l.OldestOpenAt = decodeTime(f.v)
		}
		return nil
	})
	return l, err
}
