// Package app holds intake's commands: registering a case from an agent,
// from an e-service form (idempotently) and from an Open311 client.
package app

import "errors"

// Sentinel errors. The gRPC edge maps them to status codes in one table
// (ports.errorMappings).
var (
	// ErrNotFound means no case or record has that key.
	ErrNotFound = errors.New("not found")
	// ErrPayloadMismatch means an idempotency key was reused with a
	// different payload.
	ErrPayloadMismatch = errors.New("idempotency key was used with a different payload")
	// ErrInProgress means another request with the same idempotency key is
	// being handled right now and did not finish in time.
	ErrInProgress = errors.New("a submission with this idempotency key is still in progress")
	// ErrNoAttachmentStore means a case carries attachment content but
	// this process has no store for it.
	ErrNoAttachmentStore = errors.New("attachment content cannot be stored here")
	// ErrRevisionMismatch means a compare-and-set lost to another writer.
	ErrRevisionMismatch = errors.New("record changed concurrently")
)
