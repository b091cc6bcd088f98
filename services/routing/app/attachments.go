package app

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/blobstore"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// Errors of attachment downloads.
var (
	// ErrAttachmentDestroyed means the attachment's content was destroyed
	// with the attachments class (its redaction at the plan's deadline):
	// it existed and will never be readable again. It is a precondition
	// the case no longer meets, not a missing resource, so a client tells
	// it from a wrong index (NotFound).
	ErrAttachmentDestroyed = errors.New("the attachment's content was destroyed when the case's attachments were redacted")
	// ErrNoAttachmentContent means the case has no stored content at that
	// index: no such attachment, or one that refers to a file kept
	// elsewhere.
	ErrNoAttachmentContent = errors.New("the case has no stored attachment content at that index")
	// ErrInvalidOffset means a download's offset lies beyond the file.
	ErrInvalidOffset = errors.New("offset lies beyond the end of the file")
)

// AttachmentContent reads the sealed content of attachments;
// *blobstore.Store is one.
type AttachmentContent interface {
	Get(ctx context.Context, caseID string, index int) ([]byte, error)
}

// MaxAttachmentPart is the most content one GetAttachment answer carries,
// well below the default limit on a message (limits.max_request_bytes,
// which answers are held to too), also as base64 in JSON.
const MaxAttachmentPart = 1 << 20

// GetAttachment returns part of the content of one of a case's stored
// attachments, from offset, with its name and type. Who may read the
// case may read its files (pkg/caseaccess); every read is written to the
// audit log first, as GetCase's are, and is refused when that fails. A
// redacted attachments class is ErrAttachmentDestroyed, without an audit
// record (nothing personal is read); a deleted case is ErrNotFound, as
// for GetCase.
func (q *Queries) GetAttachment(ctx context.Context, r Reader, role, rpc, caseID string, index int, purpose string, offset int64) (*routingv1.GetAttachmentResponse, error) {
	if q.content == nil {
		return nil, ErrNoAttachmentContent
	}
	row, err := q.rm.Get(caseID)
	if err != nil {
		return nil, err
	}
	if !mayRead(r, row) {
		return nil, fmt.Errorf("%w: the case is not in your queues and not forwarded to you", ErrNotPermitted)
	}
	if index < 0 || index >= len(row.Attachments) || !row.Attachments[index].GetStored() {
		return nil, ErrNoAttachmentContent
	}
	if slices.Contains(row.Redacted, casev1.DataClass_DATA_CLASS_ATTACHMENTS) || row.AttachmentNames == nil {
		return nil, ErrAttachmentDestroyed
	}
	rec := &routingv1.AuditRecord{
		AuditId: uuid.NewString(), Actor: r.Subject, Role: role, CaseId: caseID,
		DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_ATTACHMENTS},
		Purpose:     purpose, ReadAt: timestamppb.New(q.clock()), Rpc: rpc,
	}
	if err := q.audit.Record(ctx, rec); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuditUnavailable, err)
	}
	var names casev1.AttachmentNames
	if err := q.openMessage(ctx, caseID, row.AttachmentNames, &names); err != nil {
		return nil, gone(err)
	}
	content, err := q.content.Get(ctx, caseID, index)
	if err != nil {
		return nil, gone(err)
	}
	defer clear(content)
	size := int64(len(content))
	if offset > size {
		return nil, fmt.Errorf("%w: the file has %d bytes", ErrInvalidOffset, size)
	}
	end := min(size, offset+MaxAttachmentPart)
	resp := &routingv1.GetAttachmentResponse{
		ContentType: row.Attachments[index].GetContentType(),
		SizeBytes:   size,
		Offset:      offset,
		Content:     slices.Clone(content[offset:end]),
	}
	if index < len(names.GetNames()) {
		resp.Name = names.GetNames()[index]
	}
	if end < size {
		resp.NextOffset = end
	}
	return resp, nil
}

// gone turns a destroyed key, or content deleted after it, into
// ErrAttachmentDestroyed; other errors pass.
func gone(err error) error {
	if errors.Is(err, seal.ErrKeyDestroyed) || errors.Is(err, blobstore.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrAttachmentDestroyed, err)
	}
	return err
}
