package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeDB is an in-memory stand-in for EventStoreDB's gRPC streams service,
// so that the store can be tested through the real client library without a
// server. It models what this package assumes of EventStoreDB, and no more:
//
//   - appends of one event; NoStream/exact expectations are idempotent on
//     event ids (a retry whose event sits right after the expected revision
//     succeeds without a position, naming the original revision);
//   - a wrong expectation answers WrongExpectedVersion;
//   - a tombstone appends a $streamDeleted record, and reads of and appends
//     to a tombstoned stream fail with the "stream-deleted" exception;
//   - $all holds every record (system records too) with commit position ==
//     prepare position, and a catch-up subscription delivers the records
//     after its start position, filtered by stream-name prefix, then live
//     ones.
//
// Passing tests against it shows that the store's logic is consistent with
// these assumptions; only a run against a real server shows that
// EventStoreDB behaves that way.
type fakeDB struct {
	api.UnimplementedStreamsServer

	mu      sync.Mutex
	log     []*fakeRecord
	streams map[string]*fakeStream
	changed chan struct{} // closed and replaced on every write
	nextPos uint64

	// Fault injection.
	failAppends   int  // the next n appends fail with Unavailable
	noIdempotence bool // answer retries with WrongExpectedVersion
	// answer retries with the stream's current revision and a position,
	// as a server could that is less helpful than the one modelled
	idempotentReportsCurrent bool
}

type fakeRecord struct {
	stream  string
	number  uint64
	id      uuid.UUID
	typ     string
	data    []byte
	meta    []byte
	created time.Time
	pos     uint64
}

type fakeStream struct {
	events     []*fakeRecord
	tombstoned bool
}

func newFakeDB() *fakeDB {
	db := &fakeDB{streams: map[string]*fakeStream{}, changed: make(chan struct{}), nextPos: 1000}
	// Some system records first, as in a real database.
	db.write("$epoch-information", "$epoch", nil)
	db.write("$scavenges", "$scavengeIndexInitialized", nil)
	return db
}

// write appends a record; db.mu must be held (or db unshared).
func (db *fakeDB) write(stream, typ string, p *api.AppendReq_ProposedMessage) *fakeRecord {
	st := db.streams[stream]
	if st == nil {
		st = &fakeStream{}
		db.streams[stream] = st
	}
	r := &fakeRecord{stream: stream, typ: typ, created: time.Now(), pos: db.nextPos, id: uuid.New()}
	db.nextPos += 137
	if typ == typeStreamDeleted {
		r.number = math.MaxInt64
		st.tombstoned = true
	} else {
		r.number = uint64(len(st.events))
	}
	if p != nil {
		s := p.GetId().GetStructured()
		r.id, _ = esdbclient.ParseUUIDFromInt64(s.GetMostSignificantBits(), s.GetLeastSignificantBits())
		r.data, r.meta = p.GetData(), p.GetCustomMetadata()
	}
	st.events = append(st.events, r)
	db.log = append(db.log, r)
	close(db.changed)
	db.changed = make(chan struct{})
	return r
}

// streamDeleted is the error EventStoreDB answers for a tombstoned stream.
func streamDeleted(ctx context.Context, name string) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("exception", "stream-deleted", "stream-name", name))
	return status.Error(codes.FailedPrecondition, "stream deleted")
}

func (db *fakeDB) Append(srv api.Streams_AppendServer) error {
	req, err := srv.Recv()
	if err != nil {
		return err
	}
	opts := req.GetOptions()
	name := string(opts.GetStreamIdentifier().GetStreamName())
	var msgs []*api.AppendReq_ProposedMessage
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		msgs = append(msgs, req.GetProposedMessage())
	}
	if len(msgs) != 1 {
		return status.Error(codes.InvalidArgument, "the fake takes appends of one event")
	}
	msg := msgs[0]
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failAppends > 0 {
		db.failAppends--
		return status.Error(codes.Unavailable, "injected failure")
	}
	st := db.streams[name]
	if st != nil && st.tombstoned {
		return streamDeleted(srv.Context(), name)
	}
	cur := int64(-1)
	if st != nil {
		cur = int64(len(st.events)) - 1
	}
	s := msg.GetId().GetStructured()
	id, _ := esdbclient.ParseUUIDFromInt64(s.GetMostSignificantBits(), s.GetLeastSignificantBits())
	var want int64 // revision of the event if the expectation holds
	switch e := opts.GetExpectedStreamRevision().(type) {
	case *api.AppendReq_Options_Any:
		want = cur + 1
	case *api.AppendReq_Options_NoStream:
		want = 0
	case *api.AppendReq_Options_StreamExists:
		if cur < 0 {
			return srv.SendAndClose(wrongExpected(cur))
		}
		want = cur + 1
	case *api.AppendReq_Options_Revision:
		want = int64(e.Revision) + 1
	}
	if want != cur+1 {
		if want <= cur && st.events[want].id == id && !db.noIdempotence {
			// Idempotent: the event is already there. No position.
			if db.idempotentReportsCurrent {
				last := st.events[cur]
				return srv.SendAndClose(&api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
					CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(cur)},
					PositionOption:        &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{CommitPosition: last.pos, PreparePosition: last.pos}},
				}}})
			}
			return srv.SendAndClose(&api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
				CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(want)},
				PositionOption:        &api.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}},
			}}})
		}
		return srv.SendAndClose(wrongExpected(cur))
	}
	r := db.write(name, msg.GetMetadata()["type"], msg)
	return srv.SendAndClose(&api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: r.number},
		PositionOption:        &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{CommitPosition: r.pos, PreparePosition: r.pos}},
	}}})
}

func wrongExpected(cur int64) *api.AppendResp {
	w := &api.AppendResp_WrongExpectedVersion{}
	if cur < 0 {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(cur)}
	}
	w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
	return &api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
}

func (db *fakeDB) Tombstone(ctx context.Context, req *api.TombstoneReq) (*api.TombstoneResp, error) {
	name := string(req.GetOptions().GetStreamIdentifier().GetStreamName())
	db.mu.Lock()
	defer db.mu.Unlock()
	if st := db.streams[name]; st != nil && st.tombstoned {
		return nil, streamDeleted(ctx, name)
	}
	r := db.write(name, typeStreamDeleted, nil)
	return &api.TombstoneResp{PositionOption: &api.TombstoneResp_Position_{Position: &api.TombstoneResp_Position{CommitPosition: r.pos, PreparePosition: r.pos}}}, nil
}

func (db *fakeDB) Read(req *api.ReadReq, srv api.Streams_ReadServer) error {
	o := req.GetOptions()
	if all := o.GetAll(); all != nil {
		if o.GetSubscription() == nil {
			return db.readAll(o, srv)
		}
		return db.subscribeAll(o, srv)
	}
	so := o.GetStream()
	name := string(so.GetStreamIdentifier().GetStreamName())
	db.mu.Lock()
	st := db.streams[name]
	var evs []*fakeRecord
	if st != nil {
		evs = append(evs, st.events...)
	}
	db.mu.Unlock()
	if st != nil && st.tombstoned {
		return streamDeleted(srv.Context(), name)
	}
	if st == nil {
		return srv.Send(&api.ReadResp{Content: &api.ReadResp_StreamNotFound_{StreamNotFound: &api.ReadResp_StreamNotFound{StreamIdentifier: so.GetStreamIdentifier()}}})
	}
	count := o.GetCount()
	backwards := o.GetReadDirection() == api.ReadReq_Options_Backwards
	var from int64
	switch r := so.GetRevisionOption().(type) {
	case *api.ReadReq_Options_StreamOptions_Start:
		from = 0
	case *api.ReadReq_Options_StreamOptions_End:
		from = int64(len(evs)) - 1
	case *api.ReadReq_Options_StreamOptions_Revision:
		from = int64(r.Revision)
	}
	for i, n := from, uint64(0); n < count && i >= 0 && i < int64(len(evs)); n++ {
		if err := srv.Send(readEvent(evs[i])); err != nil {
			return err
		}
		if backwards {
			i--
		} else {
			i++
		}
	}
	return nil
}

func (db *fakeDB) readAll(o *api.ReadReq_Options, srv api.Streams_ReadServer) error {
	if o.GetReadDirection() != api.ReadReq_Options_Backwards || o.GetAll().GetEnd() == nil {
		return status.Error(codes.Unimplemented, "the fake only reads $all backwards from the end")
	}
	db.mu.Lock()
	log := append([]*fakeRecord(nil), db.log...)
	db.mu.Unlock()
	for i := len(log) - 1; i >= 0; i-- {
		if err := srv.Send(readEvent(log[i])); err != nil {
			return err
		}
	}
	return nil
}

func (db *fakeDB) subscribeAll(o *api.ReadReq_Options, srv api.Streams_ReadServer) error {
	var after uint64
	hasAfter := false
	if p := o.GetAll().GetPosition(); p != nil {
		if p.GetCommitPosition() != p.GetPreparePosition() {
			return status.Error(codes.InvalidArgument, "commit and prepare position differ")
		}
		after, hasAfter = p.GetCommitPosition(), true
	} else if o.GetAll().GetStart() == nil {
		return status.Error(codes.Unimplemented, "the fake subscribes from the start or a position")
	}
	var prefixes []string
	if f := o.GetFilter(); f != nil {
		prefixes = f.GetStreamIdentifier().GetPrefix()
	}
	if err := srv.Send(&api.ReadResp{Content: &api.ReadResp_Confirmation{Confirmation: &api.ReadResp_SubscriptionConfirmation{SubscriptionId: uuid.NewString()}}}); err != nil {
		return err
	}
	next := 0 // index into log
	for {
		db.mu.Lock()
		batch := append([]*fakeRecord(nil), db.log[next:]...)
		changed := db.changed
		db.mu.Unlock()
		next += len(batch)
		for _, r := range batch {
			if hasAfter && r.pos <= after {
				continue
			}
			if prefixes != nil && !hasAnyPrefix(r.stream, prefixes) {
				continue
			}
			if err := srv.Send(readEvent(r)); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-srv.Context().Done():
			return srv.Context().Err()
		}
	}
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func readEvent(r *fakeRecord) *api.ReadResp {
	most, least := esdbclient.UUIDAsInt64(r.id)
	return &api.ReadResp{Content: &api.ReadResp_Event{Event: &api.ReadResp_ReadEvent{
		Event: &api.ReadResp_ReadEvent_RecordedEvent{
			Id:               &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{MostSignificantBits: most, LeastSignificantBits: least}}},
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
			StreamRevision:   r.number,
			PreparePosition:  r.pos,
			CommitPosition:   r.pos,
			Metadata: map[string]string{
				"type":         r.typ,
				"content-type": "application/octet-stream",
				"created":      strconv.FormatInt(r.created.UnixNano()/100, 10),
			},
			CustomMetadata: r.meta,
			Data:           r.data,
		},
		Position: &api.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.pos},
	}}}
}

// fakeServer serves a fakeDB on a loopback port and can be stopped and
// started again on the same port, keeping the data (a server restart).
type fakeServer struct {
	db   *fakeDB
	addr string

	mu  sync.Mutex
	srv *grpc.Server
}

func startFake(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{db: newFakeDB()}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	f.serve(lis)
	t.Cleanup(f.stop)
	return f
}

func (f *fakeServer) url() string {
	// Few, quick discovery attempts: a test waits for them when the fake is
	// down.
	return "esdb://" + f.addr + "?tls=false&maxDiscoverAttempts=2&discoveryInterval=20"
}

func (f *fakeServer) serve(lis net.Listener) {
	srv := grpc.NewServer()
	api.RegisterStreamsServer(srv, f.db)
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
}

// stop ends the server and every connection and call on it.
func (f *fakeServer) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// restart serves again on the same address.
func (f *fakeServer) restart(t *testing.T) {
	t.Helper()
	f.stop()
	var lis net.Listener
	var err error
	for range 50 {
		if lis, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(fmt.Errorf("listen again on %s: %w", f.addr, err))
	}
	f.serve(lis)
}
