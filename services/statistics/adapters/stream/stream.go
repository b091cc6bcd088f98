// Package stream is the statistics service's JetStream stream: the
// published, anonymous record versions, kept for ever.
//
// # Layout
//
// The stream KONTAKT_STATS holds one message per record version on the
// subject kontakt.stats.<type> (fraga, felanmalan, synpunkt, brev, okand),
// so an analyst can follow one case type with a subject filter. The
// payload is the StatisticsRecord as protobuf JSON with the proto field
// names (statistics_id, registered_hour, time_to_close, …), readable with
// `nats sub 'kontakt.stats.>'` or `nats consumer next`. The header
// Kontakt-Record-Version carries the version, and Nats-Msg-Id is
// "<statistics_id>-<version>", so JetStream drops a re-publish of the same
// version within its duplicate window. A consumer keeps the newest version
// per statistics_id.
//
// Projectors (one per statistics instance) write with AppendBatch: the
// record versions of a projector's batch as one JetStream atomic batch
// (pkg/jsbatch; one disk sync for the batch instead of one per version),
// its first message carrying JetStream's expected last sequence: a
// projector stores versions only after reading everything before them,
// so several instances store each version once, independent of the
// duplicate window.
//
// The stream has no age or size limit and denies deleting and purging
// messages: statistics are kept for ever, and nothing but the projectors
// writes to it.
package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/jsbatch"
	"github.com/kontakt-se/kontakt/pkg/jsread"
	"github.com/kontakt-se/kontakt/pkg/natserr"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// ErrUnavailable means the stream could not be reached or did not answer
// in time; the caller may retry. It is the app's ErrUnavailable, so the
// service's one error table answers it without knowing this package.
var ErrUnavailable = fmt.Errorf("statistics stream unavailable: %w", app.ErrUnavailable)

// Names and defaults.
const (
	// StreamName is the JetStream stream of statistics records.
	StreamName = "KONTAKT_STATS"
	// SubjectPrefix starts every subject; the case type follows.
	SubjectPrefix = "kontakt.stats"
	// HeaderRecordVersion carries the record version of a message.
	HeaderRecordVersion = "Kontakt-Record-Version"
	// DefaultDuplicateWindow is how long JetStream remembers message ids.
	// The projectors do not depend on it (they append with an expected
	// last sequence, after reading the stream), so it is a second guard.
	DefaultDuplicateWindow = 2 * time.Minute
	// DefaultTimeout bounds each request to the server.
	DefaultTimeout = 5 * time.Second
)

// Config configures a Stream.
type Config struct {
	// Replicas is the JetStream replica count: zero means 1; a cluster
	// must use 3, as statistics are kept for ever.
	Replicas int
	// DuplicateWindow is JetStream's de-duplication window; zero means
	// DefaultDuplicateWindow.
	DuplicateWindow time.Duration
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
}

// StreamConfig returns the JetStream configuration New applies, exported
// so operators can compare it with a deployed stream:
//
//   - file storage, limits retention with no limit at all and no MaxAge:
//     statistics are kept for ever, and DiscardNew makes a full account
//     refuse new versions rather than drop old ones;
//   - DenyDelete and DenyPurge: no message is ever removed;
//   - a duplicate window, so a re-published version is stored once;
//   - AllowAtomicPublish, for AppendBatch.
func (c Config) StreamConfig() jetstream.StreamConfig {
	c.setDefaults()
	return jetstream.StreamConfig{
		Name:              StreamName,
		Description:       "kontakt anonymous statistics records, one message per record version; kept for ever",
		Subjects:          []string{SubjectPrefix + ".*"},
		Retention:         jetstream.LimitsPolicy,
		MaxConsumers:      -1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            0,
		MaxMsgsPerSubject: -1,
		Discard:           jetstream.DiscardNew,
		Storage:           jetstream.FileStorage,
		Replicas:          c.Replicas,
		Duplicates:        c.DuplicateWindow,
		DenyDelete:        true,
		DenyPurge:         true,
		// The projectors publish a batch's versions as one atomic batch.
		AllowAtomicPublish: true,
	}
}

// Stream publishes and reads statistics records. It is safe for
// concurrent use; it does not own the connection.
type Stream struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	cfg    Config
}

// New creates the stream, or updates it to StreamConfig, and returns a
// Stream that uses it.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Stream, error) {
	cfg.setDefaults()
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		return nil, fmt.Errorf("statistics stream: replicas %d out of range 1..5", cfg.Replicas)
	}
	if cfg.DuplicateWindow < 100*time.Millisecond {
		return nil, fmt.Errorf("statistics stream: duplicate window %s is below JetStream's minimum of 100ms", cfg.DuplicateWindow)
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	st, err := js.CreateOrUpdateStream(cctx, cfg.StreamConfig())
	if err != nil {
		return nil, fmt.Errorf("statistics stream: create or update %s: %w", StreamName, wrap(err))
	}
	return &Stream{js: js, stream: st, cfg: cfg}, nil
}

// Open binds to the existing stream without creating or changing it, for
// readers such as Recount.
func Open(ctx context.Context, js jetstream.JetStream) (*Stream, error) {
	cfg := Config{}
	cfg.setDefaults()
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	st, err := js.Stream(cctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("statistics stream: open %s: %w", StreamName, wrap(err))
	}
	return &Stream{js: js, stream: st, cfg: cfg}, nil
}

// Subject returns the subject of a case type's records.
func Subject(t casev1.CaseType) string {
	var name string
	switch t {
	case casev1.CaseType_CASE_TYPE_FRAGA:
		name = "fraga"
	case casev1.CaseType_CASE_TYPE_FELANMALAN:
		name = "felanmalan"
	case casev1.CaseType_CASE_TYPE_SYNPUNKT:
		name = "synpunkt"
	case casev1.CaseType_CASE_TYPE_BREV:
		name = "brev"
	default:
		name = "okand"
	}
	return SubjectPrefix + "." + name
}

// Encode turns a record version into its message. The JSON is protojson
// with proto field names, compacted: protojson deliberately varies its
// whitespace between builds, and compacting makes the bytes depend only
// on the record.
func Encode(r domain.Record) (domain.Message, error) {
	if r.StatisticsID == "" || r.Version <= 0 {
		return domain.Message{}, errors.New("statistics stream: record without id or version")
	}
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r.ToProto())
	if err != nil {
		return domain.Message{}, fmt.Errorf("statistics stream: encode record: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return domain.Message{}, fmt.Errorf("statistics stream: compact record: %w", err)
	}
	return domain.Message{
		Subject: Subject(r.Type),
		MsgID:   MsgID(r.StatisticsID, r.Version),
		Version: r.Version,
		Data:    buf.Bytes(),
	}, nil
}

// Encode is the package's Encode, for app.RecordStream.
func (s *Stream) Encode(r domain.Record) (domain.Message, error) { return Encode(r) }

// MsgID is the de-duplication id of a record version.
func MsgID(statisticsID string, version int64) string {
	return statisticsID + "-" + strconv.FormatInt(version, 10)
}

// Decode reads a message's payload. Unknown fields are skipped, so a
// reader keeps working when a later version adds fields.
func Decode(data []byte) (*statisticsv1.StatisticsRecord, error) {
	r := &statisticsv1.StatisticsRecord{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("statistics stream: decode record: %w", err)
	}
	return r, nil
}

// Publish stores one message unconditionally and returns its stream
// sequence. When JetStream recognises the message id as stored already,
// it returns the first copy's sequence. The projectors use AppendBatch.
func (s *Stream) Publish(ctx context.Context, m domain.Message) (uint64, error) {
	msg := s.natsMsg(m)
	pctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ack, err := s.js.PublishMsg(pctx, msg, jetstream.WithExpectStream(StreamName))
	if err != nil {
		return 0, fmt.Errorf("statistics stream: publish version %d: %w", m.Version, wrap(err))
	}
	return ack.Sequence, nil
}

// AppendBatch stores msgs (at most jsbatch.MaxMessages) as one atomic
// batch, all or none and with consecutive sequences, only if the stream's
// last sequence is still after, and returns the first message's
// sequence. The expected last sequence rides on the batch's first
// message (the only one JetStream checks it on), and is checked by the
// stream leader with the store, so of several publishers exactly one
// wins; the others get app.ErrConflict (wrapped). A publisher that has
// read the whole stream up to after and found none of the versions so
// stores every version at most once, whatever the duplicate window.
//
// Every message also carries its Nats-Msg-Id, a second guard: a batch
// holding a version the stream stored within the window is refused as a
// whole, and reported as app.ErrConflict too, since reading the stream
// is what resolves it.
func (s *Stream) AppendBatch(ctx context.Context, msgs []domain.Message, after uint64) (uint64, error) {
	if len(msgs) == 0 {
		return 0, errors.New("statistics stream: append an empty batch")
	}
	batch := make([]*nats.Msg, len(msgs))
	for i, m := range msgs {
		batch[i] = s.natsMsg(m)
		batch[i].Header.Set(jetstream.ExpectedStreamHeader, StreamName)
	}
	batch[0].Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(after, 10))
	pctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ack, err := jsbatch.Publish(pctx, s.js.Conn(), batch)
	if err != nil {
		if natserr.IsWrongLastSequence(err) || natserr.Is(err, natserr.AtomicPublishDuplicate) {
			return 0, fmt.Errorf("publish versions %d to %d: %w", msgs[0].Version, msgs[len(msgs)-1].Version, app.ErrConflict)
		}
		return 0, fmt.Errorf("statistics stream: publish versions %d to %d: %w", msgs[0].Version, msgs[len(msgs)-1].Version, wrap(err))
	}
	return ack.First, nil
}

func (s *Stream) natsMsg(m domain.Message) *nats.Msg {
	msg := &nats.Msg{Subject: m.Subject, Header: nats.Header{}, Data: m.Data}
	msg.Header.Set(jetstream.MsgIDHeader, m.MsgID)
	msg.Header.Set(HeaderRecordVersion, strconv.FormatInt(m.Version, 10))
	return msg
}

// LastSeq returns the sequence of the stream's last message (0 when it
// is empty).
func (s *Stream) LastSeq(ctx context.Context) (uint64, error) {
	ictx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	info, err := s.stream.Info(ictx)
	if err != nil {
		return 0, fmt.Errorf("statistics stream: info: %w", wrap(err))
	}
	return info.State.LastSeq, nil
}

// directReadMax is the longest range Read fetches message by message;
// longer ones are read in batches (jsread). A projector that lost a
// race to another instance usually reads one or a few messages.
const directReadMax = 16

// Read calls fn for every message with a sequence in (after, upTo], in
// order: a few by direct gets, more in batches through jsread. Messages
// that carry no record version (not written by a projector) are passed
// without a Record.
func (s *Stream) Read(ctx context.Context, after, upTo uint64, fn func(app.StoredMessage) error) error {
	if upTo <= after {
		return nil
	}
	if upTo-after <= directReadMax {
		for seq := after + 1; seq <= upTo; seq++ {
			gctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
			msg, err := s.stream.GetMsg(gctx, seq)
			cancel()
			if err != nil {
				return fmt.Errorf("statistics stream: read %d: %w", seq, wrap(err))
			}
			if err := fn(received(seq, msg.Header, msg.Data)); err != nil {
				return err
			}
		}
		return nil
	}
	err := jsread.Each(ctx, s.js, jsread.Range{Stream: StreamName, After: after, UpTo: upTo, Batch: 512, Timeout: s.cfg.Timeout}, func(m jsread.Msg) error {
		return fn(received(m.Sequence, m.Header, m.Data))
	})
	if errors.Is(err, jsread.ErrUnavailable) {
		return fmt.Errorf("statistics stream: read after %d: %w", after, wrap(err))
	}
	return err
}

func received(seq uint64, h nats.Header, data []byte) app.StoredMessage {
	m := app.StoredMessage{Seq: seq, Data: data}
	// A message without a version was not written by a projector
	// (somebody published by hand); neither is one whose payload is not
	// that version's record.
	v, err := strconv.ParseInt(h.Get(HeaderRecordVersion), 10, 64)
	if err != nil || v <= 0 {
		return m
	}
	p, err := Decode(data)
	if err != nil || !isRecord(p) || p.GetVersion() != v {
		return m
	}
	r := domain.RecordFromProto(p)
	m.Record = &r
	return m
}

// Follow delivers every record version after stream sequence after, then
// follows new ones until ctx ends or fn fails. It returns ctx.Err() when
// ctx ends. Messages that are not records are skipped.
func (s *Stream) Follow(ctx context.Context, after uint64, fn func(seq uint64, r *statisticsv1.StatisticsRecord) error) error {
	return s.consume(ctx, after, func(msg jetstream.Msg, seq uint64) (bool, error) {
		r, err := Decode(msg.Data())
		if err != nil || !isRecord(r) {
			// Not a record (published by hand, and undeletable here):
			// skipping it keeps the stream usable for ever.
			return true, nil
		}
		return true, fn(seq, r)
	})
}

// Recount reads the whole stream as it is when Recount starts, keeps the
// newest version per statistics id and returns those records in
// statistics id order. It is the analyst's view of the statistics, which
// the read model's answers must agree with.
func (s *Stream) Recount(ctx context.Context) ([]domain.Record, error) {
	last, err := s.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	newest := map[string]domain.Record{}
	err = s.Read(ctx, 0, last, func(m app.StoredMessage) error {
		p, err := Decode(m.Data)
		if err != nil || !isRecord(p) {
			return nil // Not a record: see Follow.
		}
		r := domain.RecordFromProto(p)
		if old, ok := newest[r.StatisticsID]; !ok || r.Version > old.Version {
			newest[r.StatisticsID] = r
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("statistics stream: recount: %w", err)
	}
	out := make([]domain.Record, 0, len(newest))
	for _, r := range newest {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b domain.Record) int { return strings.Compare(a.StatisticsID, b.StatisticsID) })
	return out, nil
}

// isRecord tells a record version from anything else on the subjects.
func isRecord(r *statisticsv1.StatisticsRecord) bool {
	return r.GetStatisticsId() != "" && r.GetVersion() > 0
}

// consume runs an ordered consumer from after+1 and hands each message to
// fn until fn says stop, fails, or ctx ends, waiting for new messages for
// ever: it follows the stream. Bounded reads use jsread instead.
func (s *Stream) consume(ctx context.Context, after uint64, fn func(jetstream.Msg, uint64) (bool, error)) error {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	cons, err := s.js.OrderedConsumer(cctx, StreamName, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   after + 1,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("statistics stream: read after %d: %w", after, wrap(err))
	}
	defer func() {
		// The server would remove the consumer after its inactivity
		// threshold; removing it now keeps the count low.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
		defer dcancel()
		if info := cons.CachedInfo(); info != nil {
			_ = s.js.DeleteConsumer(dctx, StreamName, info.Name)
		}
	}()
	it, err := cons.Messages(jetstream.PullMaxMessages(512), jetstream.PullHeartbeat(jsread.FollowHeartbeat))
	if err != nil {
		return fmt.Errorf("statistics stream: read after %d: %w", after, wrap(err))
	}
	defer it.Stop()
	defer context.AfterFunc(ctx, it.Stop)()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("statistics stream: read after %d: %w", after, wrap(err))
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("statistics stream: read after %d: %w", after, err)
		}
		more, err := fn(msg, meta.Sequence.Stream)
		if err != nil || !more {
			return err
		}
	}
}

// wrap marks transport failures and time-outs as ErrUnavailable.
func wrap(err error) error {
	if natserr.IsRefusal(err) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
