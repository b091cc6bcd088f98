// Package app holds the statistics service's use cases: the projector
// that turns case events into anonymous records, the aggregate query, and
// the record stream for analysts.
package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// ErrUnavailable means the statistics stream could not be read; the
// caller may retry. The stream adapter's failures to reach NATS wrap it.
var ErrUnavailable = errors.New("statistics temporarily unavailable")

// Queries answers the statistics API.
type Queries struct {
	st            ReadModel
	out           RecordStream
	loc           *time.Location
	suppressBelow int
}

// QueriesConfig configures Queries.
type QueriesConfig struct {
	// ReadModel answers aggregate queries; Stream streams records.
	ReadModel ReadModel
	Stream    RecordStream
	// Location is where buckets (calendar days, weeks and months) begin.
	Location *time.Location
	// SuppressBelow is k of small-cell suppression in publishable
	// queries; zero means domain.DefaultSuppressBelow.
	SuppressBelow int
}

// NewQueries returns the queries over cfg's read model and stream.
func NewQueries(cfg QueriesConfig) *Queries {
	if cfg.SuppressBelow <= 0 {
		cfg.SuppressBelow = domain.DefaultSuppressBelow
	}
	return &Queries{st: cfg.ReadModel, out: cfg.Stream, loc: cfg.Location, suppressBelow: cfg.SuppressBelow}
}

// Query aggregates the records registered in [from, to). It reads the
// hour index of the read model, which holds the newest version of every
// record, so each record counts once.
func (q *Queries) Query(ctx context.Context, req *statisticsv1.QueryRequest) (*statisticsv1.QueryResponse, error) {
	dq, err := q.domainQuery(req)
	if err != nil {
		return nil, err
	}
	agg, err := domain.NewAggregator(dq)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	from, to := agg.Range()
	if err := q.st.Scan(from, to, agg.NeedsNames(), agg.Add); err != nil {
		return nil, err
	}
	return &statisticsv1.QueryResponse{Rows: RowsToProto(agg.Rows())}, nil
}

func (q *Queries) domainQuery(req *statisticsv1.QueryRequest) (domain.Query, error) {
	// protovalidate requires both at the edge; this guards direct callers.
	if req.GetFrom() == nil || req.GetTo() == nil {
		return domain.Query{}, fmt.Errorf("%w: from and to are required", domain.ErrInvalidQuery)
	}
	if err := req.GetFrom().CheckValid(); err != nil {
		return domain.Query{}, fmt.Errorf("%w: from is not a valid time", domain.ErrInvalidQuery)
	}
	if err := req.GetTo().CheckValid(); err != nil {
		return domain.Query{}, fmt.Errorf("%w: to is not a valid time", domain.ErrInvalidQuery)
	}
	return domain.Query{
		From:          req.GetFrom().AsTime(),
		To:            req.GetTo().AsTime(),
		GroupBy:       req.GetGroupBy(),
		Granularity:   req.GetGranularity(),
		Publishable:   req.GetPublishable(),
		SuppressBelow: q.suppressBelow,
		Location:      q.loc,
	}, nil
}

// RowsToProto converts rows to the API's form. Suppressed rows and rows
// without a duration leave the duration fields unset.
func RowsToProto(rows []domain.Row) []*statisticsv1.Row {
	out := make([]*statisticsv1.Row, 0, len(rows))
	for _, r := range rows {
		p := &statisticsv1.Row{
			BucketStart:          timestamppb.New(r.BucketStart),
			Keys:                 r.Keys,
			Count:                r.Count,
			Suppressed:           r.Suppressed,
			FirstContactResolved: r.FirstContactResolved,
			Closed:               r.Closed,
		}
		if r.HasTTFR {
			p.MedianTimeToFirstResponse = durationpb.New(r.MedianTTFR)
			p.P90TimeToFirstResponse = durationpb.New(r.P90TTFR)
		}
		if r.HasTTC {
			p.MedianTimeToClose = durationpb.New(r.MedianTTC)
			p.P90TimeToClose = durationpb.New(r.P90TTC)
		}
		out = append(out, p)
	}
	return out
}

// StreamRecords sends every record version after the stream sequence
// after, then follows new ones until ctx ends (the client went away or
// the server stops), when it returns ctx.Err(). With stopAtEnd it
// returns nil instead once it has sent every version the stream held
// when it began: a client that wants the records as they are now cannot
// tell the end of the stream from a quiet moment.
func (q *Queries) StreamRecords(ctx context.Context, after uint64, stopAtEnd bool, send func(*statisticsv1.StreamRecordsResponse) error) error {
	if stopAtEnd {
		last, err := q.out.LastSeq(ctx)
		if err != nil {
			return err
		}
		return q.out.Read(ctx, after, last, func(m StoredMessage) error {
			if m.Record == nil {
				return nil // Not a record version (see StoredMessage).
			}
			return send(&statisticsv1.StreamRecordsResponse{Sequence: m.Seq, Record: m.Record.ToProto()})
		})
	}
	return q.out.Follow(ctx, after, func(seq uint64, r *statisticsv1.StatisticsRecord) error {
		return send(&statisticsv1.StreamRecordsResponse{Sequence: seq, Record: r})
	})
}
