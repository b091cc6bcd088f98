// Package jsread is the one way kontakt reads a bounded range of a
// JetStream stream in bulk (an audit trail, a case stream longer than a
// few messages, the retention ledger, the statistics stream).
//
// A bulk read needs a consumer on the server, and a consumer left behind
// costs the server memory and every later request a longer consumer list:
// about a thousand audit-trail reads once left 981 consumers on the audit
// stream, after which most reads failed for minutes. The jetstream
// package's ordered consumer was the cause: every Fetch replaces its
// consumer with a new one and nothing removes the last. So Each creates
// one plain ephemeral pull consumer under a name it chose itself, reads
// the range with it and deletes it by that name when it returns, whatever
// happened (also when the create call timed out after the server made the
// consumer). A short inactivity threshold is the safety net for a process
// that dies in between: the server then removes the consumer by itself.
//
// Direct batch gets would need no consumer at all, but nats.go v1.55.0
// has no client for them, and the streams read here do not all allow
// direct gets.
package jsread

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// ErrUnavailable wraps every failure of the server or the connection
// during a read, so callers map it to "try again" (Unavailable).
var ErrUnavailable = errors.New("jetstream read unavailable")

// Defaults.
const (
	// DefaultBatch is how many messages one pull asks for.
	DefaultBatch = 256
	// DefaultTimeout bounds each request of a read: creating and deleting
	// the consumer and waiting for one pull.
	DefaultTimeout = 5 * time.Second
	// InactiveThreshold is how long the server keeps a read's consumer
	// that nobody pulls from. Each deletes its consumer itself; this is
	// only for a reader that died before it could.
	InactiveThreshold = time.Minute
	// NamePrefix starts the name of every consumer a read creates, so an
	// operator (and a test) can tell them from others.
	NamePrefix = "kontakt_read_"
	// FollowHeartbeat is the idle heartbeat asked for by the ordered
	// consumers that follow a stream without end (the event store's
	// subscriptions, the statistics stream's). The client notices a
	// consumer that went silent after two missed heartbeats and makes a
	// new one. nats.go's default for ordered consumers is 5 s, so a
	// consumer lost at creation (seen on a three-node cluster under load:
	// a brand-new subscription delivered nothing for more than 15 s) cost
	// at least 10 s before the client even began to recover. One small
	// message a second per follower is cheap next to that.
	FollowHeartbeat = time.Second
)

// Range says which messages a read delivers: those of stream whose
// subject matches one of Subjects (all when empty), with a sequence after
// After and, when UpTo is set, at most UpTo. Without UpTo the read ends at
// the last matching message that was in the stream when it began, so it
// ends even while writers append.
type Range struct {
	Stream   string
	Subjects []string
	After    uint64
	UpTo     uint64
	// Batch is how many messages one pull asks for; zero means
	// DefaultBatch.
	Batch int
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
}

// Msg is one message of a read.
type Msg struct {
	Subject  string
	Sequence uint64
	Time     time.Time
	Header   nats.Header
	Data     []byte
}

// errStop ends a read early without an error.
var errStop = errors.New("jsread: stop")

// Stop, returned by fn, ends the read early; Each then returns nil.
func Stop() error { return errStop }

// Each calls fn for every message of the range, in stream order, and
// returns when the range is read, fn fails (its error is returned as it
// is) or ctx ends. The consumer it used is gone when it returns.
func Each(ctx context.Context, js jetstream.JetStream, r Range, fn func(Msg) error) error {
	if r.UpTo != 0 && r.UpTo <= r.After {
		return nil
	}
	batch := r.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	name := NamePrefix + nuid.Next()
	cfg := jetstream.ConsumerConfig{
		Name:              name,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: InactiveThreshold,
		MemoryStorage:     true,
		Replicas:          1,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
	}
	if r.After > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = r.After + 1
	}
	switch len(r.Subjects) {
	case 0:
	case 1:
		cfg.FilterSubject = r.Subjects[0]
	default:
		cfg.FilterSubjects = r.Subjects
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	cons, err := js.CreateConsumer(cctx, r.Stream, cfg)
	cancel()
	// Delete by name even when the create call failed: it may have timed
	// out after the server made the consumer.
	defer func() {
		// A failed delete is left to the inactivity threshold.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer dcancel()
		_ = js.DeleteConsumer(dctx, r.Stream, name)
	}()
	if err != nil {
		return fmt.Errorf("%w: create consumer on %s: %w", ErrUnavailable, r.Stream, err)
	}
	info := cons.CachedInfo()
	if info == nil {
		return fmt.Errorf("%w: no consumer info from %s", ErrUnavailable, r.Stream)
	}
	// What matched when the consumer was made is what this read owes;
	// messages appended later are left for the next read.
	remaining := info.NumPending
	var lastConsumerSeq uint64
	for remaining > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := cons.Fetch(int(min(remaining, uint64(batch))), jetstream.FetchMaxWait(timeout))
		if err != nil {
			return fmt.Errorf("%w: read %s: %w", ErrUnavailable, r.Stream, err)
		}
		n := 0
		for m := range b.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("%w: read %s: %w", ErrUnavailable, r.Stream, err)
			}
			// A plain consumer does not repair a lost delivery as an
			// ordered one would; a gap fails the read instead of
			// returning less than was asked for.
			if meta.Sequence.Consumer != lastConsumerSeq+1 {
				return fmt.Errorf("%w: read %s: delivery %d after %d", ErrUnavailable, r.Stream, meta.Sequence.Consumer, lastConsumerSeq)
			}
			lastConsumerSeq = meta.Sequence.Consumer
			if r.UpTo != 0 && meta.Sequence.Stream > r.UpTo {
				return nil
			}
			if err := fn(Msg{Subject: m.Subject(), Sequence: meta.Sequence.Stream, Time: meta.Timestamp, Header: m.Headers(), Data: m.Data()}); err != nil {
				if errors.Is(err, errStop) {
					return nil
				}
				return err
			}
			remaining--
			if meta.NumPending == 0 || (r.UpTo != 0 && meta.Sequence.Stream >= r.UpTo) {
				// Nothing more matched (messages may have aged out since
				// the consumer was made), or the range is done.
				return nil
			}
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("%w: read %s: %w", ErrUnavailable, r.Stream, err)
		}
		if n == 0 {
			// Messages were pending but none came within the wait: the
			// server is too slow or they went away. Ask which.
			ictx, icancel := context.WithTimeout(ctx, timeout)
			info, err := cons.Info(ictx)
			icancel()
			if err != nil {
				return fmt.Errorf("%w: read %s: %w", ErrUnavailable, r.Stream, err)
			}
			if info.NumPending == 0 {
				return nil
			}
			return fmt.Errorf("%w: read %s: no message within %s while %d are pending", ErrUnavailable, r.Stream, timeout, info.NumPending)
		}
	}
	return nil
}
