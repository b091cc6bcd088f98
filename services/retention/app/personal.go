package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// classToProto maps a plan's data class to the API's.
func classToProto(c domain.Class) casev1.DataClass {
	sc := seal.Class(c)
	if !sc.Valid() {
		return casev1.DataClass_DATA_CLASS_UNSPECIFIED
	}
	return sc.ToProto()
}

// typeName and channelName give the short lowercase names used in
// receipts and plans ("fraga", "phone").
func typeName(t casev1.CaseType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "CASE_TYPE_"))
}

func channelName(c casev1.Channel) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "CHANNEL_"))
}

// plainFor returns an empty message of the type a data class seals.
func plainFor(c seal.Class) proto.Message {
	switch c {
	case seal.ClassContact:
		return &casev1.ContactDetails{}
	case seal.ClassIdentity:
		return &casev1.IdentityNumber{}
	case seal.ClassFreeText:
		return &casev1.FreeText{}
	case seal.ClassAttachments:
		return &casev1.AttachmentNames{}
	case seal.ClassAnswer:
		return &casev1.AnswerText{}
	}
	return nil
}

// errGone says sealed data could not be opened because its key was
// destroyed (redacted).
func errGone(err error) bool {
	return errors.Is(err, seal.ErrKeyDestroyed) || errors.Is(err, seal.ErrKeyNotFound)
}

// openSealed opens one sealed value into the message of its class. A
// destroyed key gives (nil, nil): the value was redacted.
func (s *Service) openSealed(ctx context.Context, caseID string, sp *casev1.SealedPersonalData) (proto.Message, error) {
	_, class, _, err := seal.ParseKeyID(sp.GetKeyId())
	if err != nil {
		return nil, err
	}
	b, err := s.sealer.Open(ctx, caseID, sp)
	if errGone(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m := plainFor(class)
	if m == nil {
		return nil, fmt.Errorf("no plain type for class %s", class)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, err
	}
	return m, nil
}

// openedEvent is one event with its sealed fields opened, keyed by field
// name; redacted fields are absent.
type openedEvent struct {
	rec    eventstore.RecordedEvent
	msg    proto.Message
	opened map[string]proto.Message
}

// openEvents decodes every event of a case and opens every sealed field
// it carries (found by type, so a new event with sealed fields needs no
// change here).
func (s *Service) openEvents(ctx context.Context, caseID string, recs []eventstore.RecordedEvent) ([]openedEvent, error) {
	out := make([]openedEvent, 0, len(recs))
	for _, r := range recs {
		msg, err := caseevents.Decode(r.Type, r.Data)
		if errors.Is(err, caseevents.ErrUnknown) {
			continue
		}
		if err != nil {
			return nil, err
		}
		oe := openedEvent{rec: r, msg: msg, opened: map[string]proto.Message{}}
		var openErr error
		msg.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
				return true
			}
			sp, ok := v.Message().Interface().(*casev1.SealedPersonalData)
			if !ok {
				return true
			}
			m, err := s.openSealed(ctx, caseID, sp)
			if err != nil {
				openErr = fmt.Errorf("%s.%s: %w", r.Type, fd.Name(), err)
				return false
			}
			if m != nil {
				oe.opened[string(fd.Name())] = m
			}
			return true
		})
		if openErr != nil {
			return nil, openErr
		}
		out = append(out, oe)
	}
	return out, nil
}

// exportArchive writes the case's archive package (the case record with
// its personal data opened, and its attachments' references), verifies
// it, and returns the CaseArchived event to append.
func (s *Service) exportArchive(ctx context.Context, c *domain.Case, recs []eventstore.RecordedEvent, now time.Time) (*casev1.CaseArchived, error) {
	opened, err := s.openEvents(ctx, c.ID, recs)
	if err != nil {
		return nil, err
	}
	mo := protojson.MarshalOptions{UseProtoNames: true}
	type recordEvent struct {
		Type     string                     `json:"type"`
		Revision uint64                     `json:"revision"`
		Recorded time.Time                  `json:"recorded"`
		Event    json.RawMessage            `json:"event"`
		Opened   map[string]json.RawMessage `json:"personal_data,omitempty"`
	}
	record := struct {
		Format      string        `json:"format"`
		CaseID      string        `json:"case_id"`
		CaseNumber  string        `json:"case_number"`
		Type        string        `json:"type"`
		Channel     string        `json:"channel"`
		Events      []recordEvent `json:"events"`
		Attachments []any         `json:"-"`
	}{Format: "kontakt-case/1", CaseID: c.ID, CaseNumber: c.Number, Type: typeName(c.Type), Channel: channelName(c.Channel)}
	var attachments []map[string]any
	for _, oe := range opened {
		b, err := mo.Marshal(oe.msg)
		if err != nil {
			return nil, err
		}
		re := recordEvent{Type: oe.rec.Type, Revision: uint64(oe.rec.Revision), Recorded: oe.rec.Recorded.UTC(), Event: b}
		for name, m := range oe.opened {
			pb, err := mo.Marshal(m)
			if err != nil {
				return nil, err
			}
			if re.Opened == nil {
				re.Opened = map[string]json.RawMessage{}
			}
			re.Opened[name] = pb
		}
		record.Events = append(record.Events, re)
		if reg, ok := oe.msg.(*casev1.CaseRegistered); ok {
			var names, ids []string
			if an, ok := oe.opened["attachment_names"].(*casev1.AttachmentNames); ok {
				names, ids = an.GetNames(), an.GetAttachmentIds()
			}
			for i, a := range reg.GetAttachments() {
				// The id is sealed with the name since it may name the
				// citizen; older events carry it in plain text.
				id := a.GetAttachmentId()
				if i < len(ids) {
					id = ids[i]
				}
				item := map[string]any{"attachment_id": id, "content_type": a.GetContentType(), "size_bytes": a.GetSizeBytes()}
				if i < len(names) {
					item["name"] = names[i]
				}
				attachments = append(attachments, item)
			}
		}
	}
	caseJSON, err := json.MarshalIndent(record, "", "  ")
	if err != nil {
		return nil, err
	}
	attJSON, err := json.MarshalIndent(map[string]any{
		"note":        "kontakt holds references to attachments, not their content; the file store delivers the files under these ids",
		"attachments": attachments,
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	name, sum, err := s.archive.Export(ArchivePackage{
		CaseID: c.ID, CaseNumber: c.Number, CreatedAt: now, Revision: c.Revision,
		Files: []ArchiveFile{{Path: "case.json", Data: caseJSON}, {Path: "attachments.json", Data: attJSON}},
	})
	if err != nil {
		return nil, err
	}
	return &casev1.CaseArchived{CaseId: c.ID, Package: name, Sha256: sum, ArchivedAt: timestamppb.New(now)}, nil
}
