// Package jsbatch publishes a group of messages to one JetStream stream as
// an atomic batch: the server stores all of them or none, with consecutive
// sequences, and checks every message's expectations (expected last
// subject sequence, de-duplication id) before it stores any.
//
// kontakt uses it for group commit. With sync_interval: always a single
// server fsyncs after every stored message, so acknowledged writes are
// bounded by the disk's fsync rate; a committed atomic batch is written and
// then fsynced once (nats-server 2.15 coalesces the sync of an R1 batch),
// so many registrations cost one disk sync instead of one each. On a
// cluster the batch is one multi-entry Raft proposal.
//
// The protocol is the one of nats-server 2.12 and later (ADR-50): every
// message carries Nats-Batch-Id and Nats-Batch-Sequence (1, 2, ...), the
// last one also Nats-Batch-Commit: 1, and only the last is a request. The
// stream must have AllowAtomicPublish set. The messages are published on
// one connection, which keeps them in order; a message the server dropped
// shows as an incomplete batch at the commit, and then nothing is stored.
package jsbatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/natserr"
)

// MaxMessages is the largest batch a default nats-server accepts
// (jetstream.limits.max_batch_size); Publish refuses larger ones before it
// sends anything.
const MaxMessages = 1000

// Header names of the atomic batch protocol.
const (
	headerBatchID     = "Nats-Batch-Id"
	headerBatchSeq    = "Nats-Batch-Sequence"
	headerBatchCommit = "Nats-Batch-Commit"
)

// ErrTooLarge is returned for a batch of more than MaxMessages messages.
var ErrTooLarge = errors.New("jsbatch: batch too large")

// A commit that nobody answers ("no responders") reached no stream, so
// nothing of its batch was stored (messages a stream staged without the
// commit are dropped when the batch times out there). It happens when the
// stream is just being created or moved and the server the client talks
// to does not route its subjects yet; the batch is then sent again, as
// nats.go sends a JetStream publish again (jetstream.DefaultPubRetryWait,
// DefaultPubRetryAttempts retries after the first attempt).
var noResponders = backoff.Policy{
	Initial:  jetstream.DefaultPubRetryWait,
	Attempts: jetstream.DefaultPubRetryAttempts + 1,
}

// Ack is the server's acknowledgement of a committed batch.
type Ack struct {
	// Stream is the stream that stored the batch.
	Stream string
	// First and Last are the sequences of the first and the last message;
	// the batch occupies every sequence in between, in order.
	First, Last uint64
}

// Seq returns the stream sequence of the i-th message of the batch.
func (a Ack) Seq(i int) uint64 { return a.First + uint64(i) }

// Publish sends msgs as one atomic batch on nc and waits for the commit's
// acknowledgement or ctx. It sets the batch headers on the messages (which
// it modifies). A refusal by the server comes back as a
// *jetstream.APIError, so callers can tell a failed expectation
// (natserr.IsWrongLastSequence) from the batch-specific codes
// (natserr.AtomicPublishDisabled and the others). When ctx ends or the
// connection fails before the acknowledgement, the outcome is unknown, as
// with any publish. A batch whose commit reached no stream is sent again,
// with a new batch id, as the noResponders policy says; then the error
// wraps nats.ErrNoResponders.
func Publish(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg) (Ack, error) {
	switch {
	case len(msgs) == 0:
		return Ack{}, errors.New("jsbatch: empty batch")
	case len(msgs) > MaxMessages:
		return Ack{}, fmt.Errorf("%w: %d messages, at most %d", ErrTooLarge, len(msgs), MaxMessages)
	}
	send := publishOnce
	if len(msgs) == 1 {
		send = publishSingle
	}
	var ack Ack
	err := backoff.Retry(ctx, noResponders, func() (err error) {
		ack, err = send(ctx, nc, msgs)
		if err != nil && !errors.Is(err, nats.ErrNoResponders) {
			return backoff.Permanent(err)
		}
		return err
	})
	return ack, err
}

// publishSingle sends a batch of one message as a plain JetStream
// publish. A single message is stored whole or not at all anyway, with the
// same checks of its expectations, but as an atomic batch the server
// stages it in a file store of its own first (a directory, a metadata
// file written and synced, then removed): in a profile of 64 clients
// registering cases, staging was a quarter of the process's CPU, and
// under light load every group is a group of one. The answers are kept
// as a batch would give them: a message the server recognises by its
// Nats-Msg-Id is refused as a duplicate in a batch
// (natserr.AtomicPublishDuplicate), where a plain publish acknowledges it
// with the first copy's sequence, so that answer becomes that error.
func publishSingle(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg) (Ack, error) {
	m := msgs[0]
	if m.Header != nil {
		m.Header.Del(headerBatchID)
		m.Header.Del(headerBatchSeq)
		m.Header.Del(headerBatchCommit)
	}
	m.Reply = ""
	resp, err := nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return Ack{}, fmt.Errorf("jsbatch: publish a batch of 1: %w", err)
	}
	var ack struct {
		Stream    string              `json:"stream"`
		Seq       uint64              `json:"seq"`
		Duplicate bool                `json:"duplicate"`
		Error     *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return Ack{}, fmt.Errorf("jsbatch: publish a batch of 1: unreadable acknowledgement: %w", err)
	}
	switch {
	case ack.Error != nil:
		return Ack{}, fmt.Errorf("jsbatch: publish a batch of 1: %w", ack.Error)
	case ack.Duplicate:
		return Ack{}, fmt.Errorf("jsbatch: publish a batch of 1: %w", &jetstream.APIError{
			Code: 400, ErrorCode: jetstream.ErrorCode(natserr.AtomicPublishDuplicate), Description: "atomic publish batch contains duplicate message id"})
	case ack.Seq == 0:
		return Ack{}, errors.New("jsbatch: publish a batch of 1: acknowledgement without a sequence")
	}
	return Ack{Stream: ack.Stream, First: ack.Seq, Last: ack.Seq}, nil
}

// publishOnce sends msgs as one batch with a fresh batch id.
func publishOnce(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg) (Ack, error) {
	id := nuid.Next()
	for i, m := range msgs {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set(headerBatchID, id)
		m.Header.Set(headerBatchSeq, strconv.Itoa(i+1))
		m.Reply = ""
		if i == len(msgs)-1 {
			m.Header.Set(headerBatchCommit, "1")
			break
		}
		if err := nc.PublishMsg(m); err != nil {
			return Ack{}, fmt.Errorf("jsbatch: publish message %d of %d: %w", i+1, len(msgs), err)
		}
	}
	resp, err := nc.RequestMsgWithContext(ctx, msgs[len(msgs)-1])
	if err != nil {
		return Ack{}, fmt.Errorf("jsbatch: commit batch of %d: %w", len(msgs), err)
	}
	var ack struct {
		Stream string              `json:"stream"`
		Seq    uint64              `json:"seq"`
		Batch  string              `json:"batch"`
		Count  int                 `json:"count"`
		Error  *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return Ack{}, fmt.Errorf("jsbatch: commit batch of %d: unreadable acknowledgement: %w", len(msgs), err)
	}
	if ack.Error != nil {
		return Ack{}, fmt.Errorf("jsbatch: commit batch of %d: %w", len(msgs), ack.Error)
	}
	if ack.Batch != id || ack.Count != len(msgs) || ack.Seq < uint64(len(msgs)) {
		return Ack{}, fmt.Errorf("jsbatch: commit batch of %d: acknowledgement for batch %q with %d messages at %d does not match", len(msgs), ack.Batch, ack.Count, ack.Seq)
	}
	return Ack{Stream: ack.Stream, First: ack.Seq - uint64(len(msgs)) + 1, Last: ack.Seq}, nil
}
