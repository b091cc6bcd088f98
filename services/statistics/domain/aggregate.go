package domain

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

// ErrInvalidQuery means a query cannot be answered as asked (an empty or
// too long range, an unknown dimension or granularity). Its wrapping says
// why in words fit for an analyst; it never holds personal data.
var ErrInvalidQuery = errors.New("invalid query")

// DefaultSuppressBelow is the default k of small-cell suppression: a
// publishable row describing fewer than five cases shows no numbers, as
// such a cell can point at a person.
const DefaultSuppressBelow = 5

// MaxRangeYears bounds a query's range, so one request cannot make the
// server scan and bucket the whole history at day granularity.
const MaxRangeYears = 10

// Query is one aggregate query.
type Query struct {
	// From and To select records by registered hour, From <= hour < To.
	From, To time.Time
	// GroupBy lists the dimensions; rows carry their values in this order.
	GroupBy []statisticsv1.Dimension
	// Granularity is the time bucket; unspecified means one bucket for
	// the whole range, starting at From.
	Granularity statisticsv1.Granularity
	// Publishable asks for small-cell suppression with SuppressBelow as k.
	Publishable   bool
	SuppressBelow int
	// Location is where days, weeks and months begin (Europe/Stockholm).
	Location *time.Location
}

// Validate checks the query and says what is wrong with it.
func (q Query) Validate() error {
	switch {
	case q.From.IsZero() || q.To.IsZero():
		return fmt.Errorf("%w: from and to are required", ErrInvalidQuery)
	case !q.From.Before(q.To):
		return fmt.Errorf("%w: from must be before to", ErrInvalidQuery)
	case q.To.After(q.From.AddDate(MaxRangeYears, 0, 0)):
		return fmt.Errorf("%w: the range may span at most %d years", ErrInvalidQuery, MaxRangeYears)
	case q.Location == nil:
		return fmt.Errorf("%w: no time zone", ErrInvalidQuery)
	case q.SuppressBelow < 0:
		return fmt.Errorf("%w: negative suppression threshold", ErrInvalidQuery)
	}
	if _, ok := statisticsv1.Granularity_name[int32(q.Granularity)]; !ok {
		return fmt.Errorf("%w: unknown granularity %d", ErrInvalidQuery, q.Granularity)
	}
	for i, d := range q.GroupBy {
		if _, ok := statisticsv1.Dimension_name[int32(d)]; !ok || d == statisticsv1.Dimension_DIMENSION_UNSPECIFIED {
			return fmt.Errorf("%w: group_by[%d] is not a dimension", ErrInvalidQuery, i)
		}
		if slices.Contains(q.GroupBy[:i], d) {
			return fmt.Errorf("%w: group_by names %s twice", ErrInvalidQuery, d)
		}
	}
	return nil
}

// Facts is what aggregation needs of one record. The byte slices may
// point into storage that is only valid during Aggregator.Add: the
// aggregator copies what it keeps.
type Facts struct {
	// Hour is the registered hour in Unix seconds.
	Hour                        int64
	Type                        casev1.CaseType
	Channel                     casev1.Channel
	Category, Queue, Department []byte
	TTFR, TTC                   time.Duration
	HasTTFR, HasTTC, FCR        bool
}

// Row is one group in one time bucket.
type Row struct {
	BucketStart time.Time
	// Keys are the dimension values in GroupBy order: enum names for
	// type and channel, names for the rest ("" when a record has none).
	Keys  []string
	Count int64
	// Suppressed says Count was below k and the row shows no numbers.
	Suppressed bool
	// The durations are set only when Has is true: some record of the
	// row had that duration.
	MedianTTFR, P90TTFR  time.Duration
	HasTTFR              bool
	MedianTTC, P90TTC    time.Duration
	HasTTC               bool
	FirstContactResolved int64
	// Closed counts the row's closed cases (those with a time to close).
	Closed int64
}

// Aggregator counts records into rows. Add every record (or its facts);
// records outside the range are ignored, so a caller may feed it a
// superset. It is not safe for concurrent use.
type Aggregator struct {
	q        Query
	from, to int64
	groups   map[string]*group
	key      []byte
	// The bucket of the last hour seen: records arrive grouped by hour
	// when read from the hour index, so bucketing costs one comparison.
	lastHour, lastBucket int64
	haveLast             bool
}

type group struct {
	bucket    int64
	keys      []string
	count     int64
	fcr       int64
	ttfr, ttc []int64
}

// NewAggregator validates q and returns an empty aggregator for it.
func NewAggregator(q Query) (*Aggregator, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	return &Aggregator{
		q:      q,
		from:   q.From.Unix(),
		to:     q.To.Unix(),
		groups: make(map[string]*group),
		key:    make([]byte, 0, 64),
	}, nil
}

// Range returns the query's range in Unix seconds, for readers that can
// skip what lies outside.
func (a *Aggregator) Range() (from, to int64) { return a.from, a.to }

// NeedsNames reports whether the query groups by category, queue or
// department, so a reader can skip decoding them otherwise.
func (a *Aggregator) NeedsNames() bool {
	for _, d := range a.q.GroupBy {
		switch d {
		case statisticsv1.Dimension_DIMENSION_CATEGORY, statisticsv1.Dimension_DIMENSION_QUEUE, statisticsv1.Dimension_DIMENSION_DEPARTMENT:
			return true
		}
	}
	return false
}

// AddRecord adds a record.
func (a *Aggregator) AddRecord(r Record) {
	f := r.Facts()
	a.Add(&f)
}

// Add adds one record's facts.
func (a *Aggregator) Add(f *Facts) {
	if f.Hour < a.from || f.Hour >= a.to {
		return
	}
	if !a.haveLast || f.Hour != a.lastHour {
		a.lastHour, a.lastBucket, a.haveLast = f.Hour, a.bucket(f.Hour), true
	}
	k := binary.BigEndian.AppendUint64(a.key[:0], uint64(a.lastBucket))
	for _, d := range a.q.GroupBy {
		switch d {
		case statisticsv1.Dimension_DIMENSION_TYPE:
			k = binary.AppendVarint(k, int64(f.Type))
		case statisticsv1.Dimension_DIMENSION_CHANNEL:
			k = binary.AppendVarint(k, int64(f.Channel))
		case statisticsv1.Dimension_DIMENSION_CATEGORY:
			k = appendPrefixed(k, f.Category)
		case statisticsv1.Dimension_DIMENSION_QUEUE:
			k = appendPrefixed(k, f.Queue)
		case statisticsv1.Dimension_DIMENSION_DEPARTMENT:
			k = appendPrefixed(k, f.Department)
		}
	}
	a.key = k
	g := a.groups[string(k)] // No allocation for a lookup.
	if g == nil {
		g = &group{bucket: a.lastBucket, keys: a.keys(f)}
		a.groups[string(k)] = g
	}
	g.count++
	if f.FCR {
		g.fcr++
	}
	if f.HasTTFR {
		g.ttfr = append(g.ttfr, int64(f.TTFR))
	}
	if f.HasTTC {
		g.ttc = append(g.ttc, int64(f.TTC))
	}
}

func appendPrefixed(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (a *Aggregator) keys(f *Facts) []string {
	keys := make([]string, len(a.q.GroupBy))
	for i, d := range a.q.GroupBy {
		switch d {
		case statisticsv1.Dimension_DIMENSION_TYPE:
			keys[i] = f.Type.String()
		case statisticsv1.Dimension_DIMENSION_CHANNEL:
			keys[i] = f.Channel.String()
		case statisticsv1.Dimension_DIMENSION_CATEGORY:
			keys[i] = string(f.Category)
		case statisticsv1.Dimension_DIMENSION_QUEUE:
			keys[i] = string(f.Queue)
		case statisticsv1.Dimension_DIMENSION_DEPARTMENT:
			keys[i] = string(f.Department)
		}
	}
	return keys
}

// bucket returns the start of the bucket holding hour, in Unix seconds.
func (a *Aggregator) bucket(hour int64) int64 {
	if a.q.Granularity == statisticsv1.Granularity_GRANULARITY_UNSPECIFIED {
		return a.from
	}
	return BucketStart(time.Unix(hour, 0), a.q.Granularity, a.q.Location).Unix()
}

// BucketStart returns the start of the calendar bucket that holds t, in
// loc: local midnight of its day, of the Monday of its ISO week, or of the
// first of its month. Swedish daylight saving changes at 02:00 or 03:00,
// so local midnight always exists. Unspecified granularity returns t.
func BucketStart(t time.Time, g statisticsv1.Granularity, loc *time.Location) time.Time {
	l := t.In(loc)
	y, m, d := l.Date()
	switch g {
	case statisticsv1.Granularity_GRANULARITY_DAY:
		return time.Date(y, m, d, 0, 0, 0, 0, loc)
	case statisticsv1.Granularity_GRANULARITY_WEEK:
		sinceMonday := (int(l.Weekday()) + 6) % 7
		return time.Date(y, m, d-sinceMonday, 0, 0, 0, 0, loc)
	case statisticsv1.Granularity_GRANULARITY_MONTH:
		return time.Date(y, m, 1, 0, 0, 0, 0, loc)
	default:
		return t
	}
}

// Rows returns the rows, sorted by bucket and then by keys, with
// small-cell suppression applied when the query is publishable. It may
// be called once; the aggregator's duration lists are reordered.
func (a *Aggregator) Rows() []Row {
	rows := make([]Row, 0, len(a.groups))
	k := a.q.SuppressBelow
	if k == 0 {
		k = DefaultSuppressBelow
	}
	for _, g := range a.groups {
		r := Row{BucketStart: time.Unix(g.bucket, 0).In(a.q.Location), Keys: g.keys, Count: g.count}
		if a.q.Publishable && g.count < int64(k) {
			// A small cell shows nothing that could point at a person:
			// no count, no durations, no resolved count.
			r.Count = 0
			r.Suppressed = true
			rows = append(rows, r)
			continue
		}
		r.FirstContactResolved = g.fcr
		r.Closed = int64(len(g.ttc))
		if len(g.ttfr) > 0 {
			r.MedianTTFR = time.Duration(Quantile(g.ttfr, 1, 2))
			r.P90TTFR = time.Duration(Quantile(g.ttfr, 9, 10))
			r.HasTTFR = true
		}
		if len(g.ttc) > 0 {
			r.MedianTTC = time.Duration(Quantile(g.ttc, 1, 2))
			r.P90TTC = time.Duration(Quantile(g.ttc, 9, 10))
			r.HasTTC = true
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(x, y Row) int {
		if c := x.BucketStart.Compare(y.BucketStart); c != 0 {
			return c
		}
		return slices.CompareFunc(x.Keys, y.Keys, strings.Compare)
	})
	return rows
}

// Aggregate runs q over records: the reference that the stored read
// model's answers are checked against (records recounted from the
// stream give the same rows).
func Aggregate(q Query, records []Record) ([]Row, error) {
	a, err := NewAggregator(q)
	if err != nil {
		return nil, err
	}
	for _, r := range records {
		a.AddRecord(r)
	}
	return a.Rows(), nil
}
