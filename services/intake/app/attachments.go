package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// Attachment content and the crash window.
//
// The content of a case's attachments is sealed and stored (Config.Attachments)
// before its CaseRegistered is appended, so a case never points at
// content that is not there. A crash, or a failed append, between the two
// leaves objects of a case that does not exist. A retry of the same
// registration (a form's idempotency key, a relay delivering the same
// mail again) derives the same case id and overwrites them; anything else
// is found by SweepOrphanAttachments, which deletes the objects of every
// case id that has none of its events after a grace period. The orphans
// are ciphertext under a key nothing else uses until then.

// storeAttachments seals and stores the uploaded content, in the order of
// the case's attachments (nil entries are files stored elsewhere).
func (s *Service) storeAttachments(ctx context.Context, caseID string, content [][]byte) error {
	if s.cfg.Attachments == nil {
		return ErrNoAttachmentStore
	}
	for i, c := range content {
		if c == nil {
			continue
		}
		if err := s.cfg.Attachments.Put(ctx, caseID, i, c); err != nil {
			return fmt.Errorf("store attachment: %w", err)
		}
	}
	return nil
}

// OrphanGrace is how long stored content may wait for its case before the
// sweep deletes it: far longer than any registration takes, including its
// retries and a relay's second delivery.
const OrphanGrace = time.Hour

// SweepOrphanAttachments deletes the stored content of case ids that were
// never registered (see above), written more than grace ago by the wall
// clock (objects carry the server's time, not the development clock). It
// returns how many cases it swept. A case that retention deleted has no
// events either; its content is deleted with it, and a second deletion is
// harmless.
func (s *Service) SweepOrphanAttachments(ctx context.Context, grace time.Duration) (int, error) {
	if s.cfg.Attachments == nil {
		return 0, nil
	}
	stored, err := s.cfg.Attachments.Stored(ctx)
	if err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-grace)
	var swept int
	var errs []error
	for caseID, written := range stored {
		if written.After(cutoff) {
			continue
		}
		_, err := s.store.Read(ctx, caseID)
		switch {
		case err == nil:
			continue
		case !errors.Is(err, eventstore.ErrStreamNotFound):
			errs = append(errs, err)
			continue
		}
		if err := s.cfg.Attachments.DeleteCase(ctx, caseID); err != nil {
			errs = append(errs, err)
			continue
		}
		swept++
		s.logger.InfoContext(ctx, "attachments of a case that was never registered deleted", "case_id", caseID)
	}
	return swept, errors.Join(errs...)
}

// RunOrphanSweep sweeps every interval until ctx ends.
func (s *Service) RunOrphanSweep(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := s.SweepOrphanAttachments(ctx, OrphanGrace); err != nil {
			s.logger.WarnContext(ctx, "orphan attachment sweep incomplete; the next one tries again", "swept", n, "error", err)
		}
	}
}
