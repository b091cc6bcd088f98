// Package blobstore keeps the content of cases' attachments: sealed with
// the case's attachments key (pkg/seal, SealBlob) before it leaves the
// process, in the NATS JetStream object store (one bucket, one object per
// attachment). Intake writes, routing reads for an audited download, and
// retention deletes at the plan's deadline; all three use this package,
// so none of them imports another service.
//
// Objects are named "<case id>/<index>", the attachment's place in
// CaseRegistered.attachments: the name says which case owns the content
// (so a case's objects can be deleted knowing only its id, and an orphan
// sweep can ask whether the case exists) and nothing about the person.
// The content is encrypted before Put, so the object store's files, its
// replicas and backups hold only ciphertext; once the key is destroyed
// (seal.ErrKeyDestroyed) the content is unreadable even where a copy of
// the bytes survives, and DeleteCase removes the objects themselves.
package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/seal"
)

// DefaultBucket is the object store's bucket name.
const DefaultBucket = "KONTAKT_ATTACHMENTS"

// MaxPerCase is the most attachments a case may have (the API's
// max_items on CaseInput.attachments, and what a mail may carry):
// DeleteCase removes every index below it.
const MaxPerCase = 20

// ErrNotFound means the case has no stored content at that index.
var ErrNotFound = errors.New("blobstore: no stored content")

// ErrUnavailable means the object store could not be reached or did not
// answer: a passing condition, the caller may try again.
var ErrUnavailable = errors.New("blobstore: object store unavailable")

// Sealer seals and opens blobs with a case's data keys; *seal.Sealer is
// one.
type Sealer interface {
	SealBlob(ctx context.Context, caseID string, class seal.Class, gen uint32, name string, plaintext []byte) ([]byte, error)
	OpenBlob(ctx context.Context, caseID, name string, blob []byte) ([]byte, error)
}

// Config configures the bucket.
type Config struct {
	// Bucket is the object store's name; empty means DefaultBucket.
	Bucket string
	// Replicas is the bucket's replication (nats.replicas).
	Replicas int
}

// Store is the attachment content store.
type Store struct {
	obs    jetstream.ObjectStore
	sealer Sealer
}

// Open creates the bucket if needed (file storage, compression off: the
// content is ciphertext and does not compress) and returns the store.
func Open(ctx context.Context, js jetstream.JetStream, sealer Sealer, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      cfg.Bucket,
		Description: "kontakt: sealed attachment content, one object per attachment",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("blobstore: open bucket %s: %w", cfg.Bucket, err)
	}
	return &Store{obs: obs, sealer: sealer}, nil
}

// Name is the object name of a case's attachment at index.
func Name(caseID string, index int) string {
	return caseID + "/" + strconv.Itoa(index)
}

// CaseOf returns the case id of an object name made by Name.
func CaseOf(name string) (string, bool) {
	id, idx, ok := strings.Cut(name, "/")
	if !ok || seal.ValidateCaseID(id) != nil {
		return "", false
	}
	if n, err := strconv.Atoi(idx); err != nil || n < 0 || n >= MaxPerCase {
		return "", false
	}
	return id, true
}

// Put seals content with the case's attachments key (generation 0: only
// a new case gets attachments, and nothing of it was redacted yet,
// creating the key if the case has none yet) and stores it as the
// attachment at index, replacing what a crashed earlier attempt of the
// same registration may have left there.
func (s *Store) Put(ctx context.Context, caseID string, index int, content []byte) error {
	if index < 0 || index >= MaxPerCase {
		return fmt.Errorf("blobstore: attachment index %d out of range", index)
	}
	name := Name(caseID, index)
	sealed, err := s.sealer.SealBlob(ctx, caseID, seal.ClassAttachments, 0, name, content)
	if err != nil {
		return fmt.Errorf("blobstore: seal %s: %w", name, err)
	}
	if _, err := s.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, bytes.NewReader(sealed)); err != nil {
		return fmt.Errorf("blobstore: put %s: %w: %w", name, ErrUnavailable, err)
	}
	return nil
}

// Get reads and opens the attachment at index. It fails with ErrNotFound
// when nothing is stored there (never stored, or deleted) and with
// seal.ErrKeyDestroyed when the key is gone while the object is not yet.
func (s *Store) Get(ctx context.Context, caseID string, index int) ([]byte, error) {
	name := Name(caseID, index)
	res, err := s.obs.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: get %s: %w: %w", name, ErrUnavailable, err)
	}
	defer func() { _ = res.Close() }()
	sealed, err := io.ReadAll(res)
	if err != nil {
		return nil, fmt.Errorf("blobstore: read %s: %w: %w", name, ErrUnavailable, err)
	}
	return s.sealer.OpenBlob(ctx, caseID, name, sealed)
}

// DeleteCase deletes every attachment of the case: the chunks are purged
// and the object's entry becomes a delete marker (which names the case id
// and index, nothing personal). Deleting what is not there is no error, so
// it can be repeated after a failure.
func (s *Store) DeleteCase(ctx context.Context, caseID string) error {
	var errs []error
	for i := range MaxPerCase {
		err := s.obs.Delete(ctx, Name(caseID, i))
		if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("blobstore: delete the attachments of %s: %w: %w", caseID, ErrUnavailable, err)
	}
	return nil
}

// Stored lists the cases that have content stored, each with the time
// its newest object was written, for the orphan sweep. It reads the
// bucket's whole index: meant for a periodic sweep, not for a request.
func (s *Store) Stored(ctx context.Context) (map[string]time.Time, error) {
	infos, err := s.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return map[string]time.Time{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: list: %w: %w", ErrUnavailable, err)
	}
	out := make(map[string]time.Time, len(infos))
	for _, info := range infos {
		id, ok := CaseOf(info.Name)
		if !ok {
			continue
		}
		if info.ModTime.After(out[id]) {
			out[id] = info.ModTime
		}
	}
	return out, nil
}
