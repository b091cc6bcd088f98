// Package natserr is the one catalogue of the NATS and JetStream failures
// kontakt acts on: the JetStream API error codes it tells apart, by name,
// and the questions every caller asks of a failure (did another writer
// move the subject on? is there no such message? is NATS only briefly
// away?). Every package asks here rather than comparing numbers itself,
// because the numbers hide pitfalls that one place should know: a
// conflict on an expected last sequence is 10071 on a single server and
// 10164 on a replicated stream, and a server answering "try again" says so
// in the status (503, 408, 504) rather than in the code.
//
// The codes are nats-server's (server/errors.json); the constants below
// carry the server's own constant names in their comments, so they can be
// looked up there.
package natserr

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Code is a JetStream API error code.
type Code = jetstream.ErrorCode

// The JetStream API error codes kontakt acts on.
const (
	// MessageNotFound (JSNoMessageFoundErr): no message at that
	// sequence, or none for that subject.
	MessageNotFound Code = 10037
	// MessageExceedsMaximum (JSStreamMessageExceedsMaximumErr): the
	// message is larger than the stream allows.
	MessageExceedsMaximum Code = 10054
	// StreamNotFound (JSStreamNotFoundErr): no stream of that name.
	StreamNotFound Code = 10059
	// WrongLastSequence (JSStreamWrongLastSequenceErrF): an expected last
	// (subject) sequence did not hold; another writer got in first. A
	// replicated stream reports WrongLastSequenceConstant instead.
	WrongLastSequence Code = 10071
	// StoreFailed (JSStreamStoreFailedF): the stream would not store the
	// message; its description says why (a subject already at its
	// per-subject limit, among others).
	StoreFailed Code = 10077
	// DuplicateInProcess (JSStreamDuplicateMessageConflict): a message
	// with the same id is being stored right now (clustered streams), so
	// the outcome of this attempt is not known yet.
	DuplicateInProcess Code = 10158
	// WrongLastSequenceConstant (JSStreamWrongLastSequenceConstantErr):
	// WrongLastSequence, as a replicated stream reports it.
	WrongLastSequenceConstant Code = 10164
	// AtomicPublishDisabled (JSAtomicPublishDisabledErr): the stream does
	// not allow atomic batch publish.
	AtomicPublishDisabled Code = 10174
	// AtomicPublishIncomplete (JSAtomicPublishIncompleteBatchErr): a
	// message of the batch did not reach the server (or the batch timed
	// out there); nothing of it was stored.
	AtomicPublishIncomplete Code = 10176
	// AtomicPublishDuplicate (JSAtomicPublishContainsDuplicateMessageErr):
	// a message's de-duplication id is already stored, so the whole batch
	// was refused.
	AtomicPublishDuplicate Code = 10201
	// AtomicPublishTooManyInflight (JSAtomicPublishTooManyInflight): the
	// server has too many open batches.
	AtomicPublishTooManyInflight Code = 10210
)

// APIError returns the JetStream API error in err's chain, if there is
// one: the server's answer, as opposed to a failure on the way to it.
func APIError(err error) (*jetstream.APIError, bool) {
	return errors.AsType[*jetstream.APIError](err)
}

// Is reports whether err carries a JetStream API error with one of codes.
func Is(err error, codes ...Code) bool {
	api, ok := APIError(err)
	if !ok {
		return false
	}
	for _, c := range codes {
		if api.ErrorCode == c {
			return true
		}
	}
	return false
}

// IsWrongLastSequence reports whether the server refused a publish
// because its expected last (subject) sequence did not hold: another
// writer moved the stream or the subject on. This is the optimistic
// concurrency conflict of every compare-and-set on a stream.
func IsWrongLastSequence(err error) bool {
	return Is(err, WrongLastSequence, WrongLastSequenceConstant)
}

// IsSubjectFull reports whether the server refused to store a message
// because its subject already holds as many as the stream allows per
// subject (a stream with DiscardNewPerSubject): the server says so only in
// the description of StoreFailed.
func IsSubjectFull(err error) bool {
	api, ok := APIError(err)
	return ok && api.ErrorCode == StoreFailed && strings.Contains(api.Description, "per subject")
}

// IsMessageNotFound reports whether a message get found nothing at the
// sequence or for the subject asked for, as the client's sentinel or as
// the server's code.
func IsMessageNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrMsgNotFound) || Is(err, MessageNotFound)
}

// IsTransient reports whether err is NATS being briefly away rather than
// an answer: a request that timed out, no responders or no stream
// response while a leader is elected, a connection that is reconnecting
// or closed, or the server answering "unavailable" (503), "timed out"
// (408, 504) or "a message with this id is being stored right now". Such
// a failure is worth retrying; a client sees it as Unavailable.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if api, ok := APIError(err); ok {
		return transientAnswer(api)
	}
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		// A NATS request that timed out under its own deadline.
		return true
	}
	for _, target := range []error{
		nats.ErrTimeout, nats.ErrNoResponders, nats.ErrConnectionClosed, nats.ErrConnectionReconnecting,
		nats.ErrDisconnected, jetstream.ErrNoStreamResponse,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// IsRefusal reports whether the server answered err and the answer is no:
// a JetStream API error that is not transient. Retrying the same request
// gets the same answer. Any other failure (a time-out, a dropped
// connection) leaves the outcome of a write unknown.
func IsRefusal(err error) bool {
	api, ok := APIError(err)
	return ok && !transientAnswer(api)
}

// transientAnswer reports whether the server's answer means "not now".
func transientAnswer(api *jetstream.APIError) bool {
	switch api.Code {
	case 503, 408, 504:
		return true
	}
	return api.ErrorCode == DuplicateInProcess
}
