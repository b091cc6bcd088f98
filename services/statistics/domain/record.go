// Package domain holds the statistics service's rules, free of I/O: how the
// anonymous record of a case is built from the case's events, and how
// records are aggregated into the rows of a query (time buckets, medians
// and 90th percentiles, small-cell suppression).
//
// A record must never identify a person or a case. It holds only plain
// attributes that the case events carry for statistics (type, channel,
// category, queue, department, times, the coarse area), never the case id
// or number, names, contact details, identity numbers, free text, exact
// coordinates or actor ids. Its id is a keyed hash of a random seed that
// only the case's own events carry (see IDs), so it cannot be derived from
// the case; the mapping from case to record lives only as long as the case.
package domain

import (
	"errors"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

// ErrMalformedEvent means an event of a known type could not be decoded.
// The projector stops at such an event and retries, rather than silently
// publishing statistics that disagree with the log.
var ErrMalformedEvent = errors.New("statistics: malformed event")

// Area is the coarse place of a fault report, rounded to two decimals
// (about a kilometre), which is as precise as statistics may be.
type Area struct {
	Latitude  float64
	Longitude float64
}

// Record is the anonymous statistics record of one case. It is a value
// type (comparable with ==) so that the projector can tell whether an event
// changed it, and only a change makes a new version.
type Record struct {
	// StatisticsID is derived from a random seed in the case's
	// CaseRegistered (see IDs); nothing links it to the case once the
	// case is deleted.
	StatisticsID string
	// Version is the log position of the case event that produced this
	// version. Positions only grow, so versions of a record strictly
	// increase, and re-projecting an event yields the same version.
	Version int64
	Type    casev1.CaseType
	Channel casev1.Channel
	// Category, Queue and Department are names from configuration and
	// routing rules, never text a citizen wrote.
	Category   string
	Queue      string
	Department string
	// RegisteredHour is the registration time rounded down to the hour,
	// in UTC. Statistics never hold the exact time.
	RegisteredHour time.Time
	// TimeToFirstResponse is the first response minus the registration,
	// valid when HasFirstResponse: the first answer the relay accepted
	// for a case answered by e-mail (MailSent), else the first
	// CaseAnswered.
	TimeToFirstResponse time.Duration
	HasFirstResponse    bool
	// TimeToClose is the last CaseClosed minus the registration, valid
	// when HasClose. It stays after a reopening until the next close.
	TimeToClose time.Duration
	HasClose    bool
	// FirstContactResolution is the last close's flag, and false once the
	// case was reopened: a reopened case was not resolved at first contact.
	FirstContactResolution     bool
	Reopenings                 int32
	PersonalDataRedactedOnTime bool
	DeletedOnTime              bool
	Area                       Area
	HasArea                    bool
	Closed                     bool
}

// ToProto returns the record in the API's form, which is also what the
// statistics stream carries (as JSON).
func (r Record) ToProto() *statisticsv1.StatisticsRecord {
	p := &statisticsv1.StatisticsRecord{
		StatisticsId:               r.StatisticsID,
		Version:                    r.Version,
		Type:                       r.Type,
		Channel:                    r.Channel,
		Category:                   r.Category,
		Queue:                      r.Queue,
		Department:                 r.Department,
		FirstContactResolution:     r.FirstContactResolution,
		Reopenings:                 r.Reopenings,
		PersonalDataRedactedOnTime: r.PersonalDataRedactedOnTime,
		DeletedOnTime:              r.DeletedOnTime,
		Closed:                     r.Closed,
	}
	if !r.RegisteredHour.IsZero() {
		p.RegisteredHour = timestamppb.New(r.RegisteredHour)
	}
	if r.HasFirstResponse {
		p.TimeToFirstResponse = durationpb.New(r.TimeToFirstResponse)
	}
	if r.HasClose {
		p.TimeToClose = durationpb.New(r.TimeToClose)
	}
	if r.HasArea {
		p.Area = &casev1.CoarseLocation{Latitude: r.Area.Latitude, Longitude: r.Area.Longitude}
	}
	return p
}

// RecordFromProto is the inverse of ToProto, for records read back from
// the stream or the read model.
func RecordFromProto(p *statisticsv1.StatisticsRecord) Record {
	r := Record{
		StatisticsID:               p.GetStatisticsId(),
		Version:                    p.GetVersion(),
		Type:                       p.GetType(),
		Channel:                    p.GetChannel(),
		Category:                   p.GetCategory(),
		Queue:                      p.GetQueue(),
		Department:                 p.GetDepartment(),
		FirstContactResolution:     p.GetFirstContactResolution(),
		Reopenings:                 p.GetReopenings(),
		PersonalDataRedactedOnTime: p.GetPersonalDataRedactedOnTime(),
		DeletedOnTime:              p.GetDeletedOnTime(),
		Closed:                     p.GetClosed(),
	}
	if p.RegisteredHour != nil {
		r.RegisteredHour = p.GetRegisteredHour().AsTime().UTC()
	}
	if p.TimeToFirstResponse != nil {
		r.TimeToFirstResponse, r.HasFirstResponse = p.GetTimeToFirstResponse().AsDuration(), true
	}
	if p.TimeToClose != nil {
		r.TimeToClose, r.HasClose = p.GetTimeToClose().AsDuration(), true
	}
	if p.Area != nil {
		r.Area, r.HasArea = Area{Latitude: p.GetArea().GetLatitude(), Longitude: p.GetArea().GetLongitude()}, true
	}
	return r
}

// Facts returns what aggregation needs of the record.
func (r Record) Facts() Facts {
	return Facts{
		Hour:    r.RegisteredHour.Unix(),
		Type:    r.Type,
		Channel: r.Channel,
		// The aggregator copies what it keeps, so sharing is safe.
		Category:   []byte(r.Category),
		Queue:      []byte(r.Queue),
		Department: []byte(r.Department),
		TTFR:       r.TimeToFirstResponse,
		HasTTFR:    r.HasFirstResponse,
		TTC:        r.TimeToClose,
		HasTTC:     r.HasClose,
		FCR:        r.FirstContactResolution,
	}
}

// roundCoordinate rounds to two decimals. Intake already does, but a
// record is kept for ever, so statistics do not rely on it.
func roundCoordinate(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return math.Round(v*100) / 100
}
