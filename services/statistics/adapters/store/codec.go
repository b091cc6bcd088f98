package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// errCorrupt means a stored value could not be decoded.
var errCorrupt = errors.New("statistics store: corrupt stored value")

// Records are stored as the API's StatisticsRecord in deterministic
// protobuf wire format: the schema is the published one, decoding skips
// unknown fields (a newer binary's rows stay readable), and the same
// record always gives the same bytes.

func marshalRecord(r domain.Record) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.ToProto())
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return b, nil
}

func unmarshalRecord(b []byte) (domain.Record, error) {
	p := &statisticsv1.StatisticsRecord{}
	if err := proto.Unmarshal(b, p); err != nil {
		return domain.Record{}, fmt.Errorf("%w: record: %w", errCorrupt, err)
	}
	return domain.RecordFromProto(p), nil
}

// The records bucket's value: the version (8 bytes), the registered hour
// (8 bytes, so the hour-index key can be found without decoding), then
// the record. The version in front lets the upsert compare versions
// without decoding.
func encodeRecordValue(r domain.Record) ([]byte, error) {
	rec, err := marshalRecord(r)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 16+len(rec))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Version))
	b = binary.BigEndian.AppendUint64(b, sortableHour(r.RegisteredHour))
	return append(b, rec...), nil
}

func recordValueVersion(v []byte) (int64, uint64, error) {
	if len(v) < 16 {
		return 0, 0, fmt.Errorf("%w: short record value", errCorrupt)
	}
	return int64(binary.BigEndian.Uint64(v)), binary.BigEndian.Uint64(v[8:]), nil
}

func decodeRecordValue(v []byte) (domain.Record, error) {
	if len(v) < 16 {
		return domain.Record{}, fmt.Errorf("%w: short record value", errCorrupt)
	}
	return unmarshalRecord(v[16:])
}

// The cases bucket's value: field 1 the exact registration time (zig-zag
// Unix nanoseconds), field 2 the current record, field 3 (1, only when
// set) FirstResponseMailed.
func encodeCase(c *domain.Case) ([]byte, error) {
	rec, err := marshalRecord(c.Record)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 12+len(rec))
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, protowire.EncodeZigZag(c.RegisteredAt.UnixNano()))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, rec)
	if c.FirstResponseMailed {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	return b, nil
}

func decodeCase(b []byte) (*domain.Case, error) {
	c := &domain.Case{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: case: %w", errCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, fmt.Errorf("%w: case: %w", errCorrupt, protowire.ParseError(m))
			}
			c.RegisteredAt = time.Unix(0, protowire.DecodeZigZag(v)).UTC()
			n = m
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, fmt.Errorf("%w: case: %w", errCorrupt, protowire.ParseError(m))
			}
			r, err := unmarshalRecord(v)
			if err != nil {
				return nil, err
			}
			c.Record = r
			n = m
		case num == 3 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, fmt.Errorf("%w: case: %w", errCorrupt, protowire.ParseError(m))
			}
			c.FirstResponseMailed = v != 0
			n = m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, fmt.Errorf("%w: case: %w", errCorrupt, protowire.ParseError(n))
			}
		}
		b = b[n:]
	}
	return c, nil
}

// The hour index's value holds exactly what a query aggregates, in a
// layout that decodes without allocating: a flags byte, type, channel,
// then the durations present and three length-prefixed names.
const (
	flagTTFR = 1 << iota
	flagTTC
	flagFCR
)

func encodeFacts(r domain.Record) []byte {
	b := make([]byte, 0, 24+len(r.Category)+len(r.Queue)+len(r.Department))
	var flags byte
	if r.HasFirstResponse {
		flags |= flagTTFR
	}
	if r.HasClose {
		flags |= flagTTC
	}
	if r.FirstContactResolution {
		flags |= flagFCR
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, int64(r.Type))
	b = binary.AppendVarint(b, int64(r.Channel))
	if r.HasFirstResponse {
		b = binary.AppendVarint(b, int64(r.TimeToFirstResponse))
	}
	if r.HasClose {
		b = binary.AppendVarint(b, int64(r.TimeToClose))
	}
	for _, s := range []string{r.Category, r.Queue, r.Department} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// decodeFacts fills f from an index value; the names point into v, and
// are skipped (left empty) unless names is set, since most queries
// group by type and channel only.
func decodeFacts(v []byte, f *domain.Facts, names bool) error {
	if len(v) < 1 {
		return fmt.Errorf("%w: empty index value", errCorrupt)
	}
	flags := v[0]
	v = v[1:]
	varint := func() (int64, error) {
		x, n := binary.Varint(v)
		if n <= 0 {
			return 0, fmt.Errorf("%w: index value", errCorrupt)
		}
		v = v[n:]
		return x, nil
	}
	bytes := func() ([]byte, error) {
		l, n := binary.Uvarint(v)
		if n <= 0 || l > uint64(len(v)-n) {
			return nil, fmt.Errorf("%w: index value", errCorrupt)
		}
		s := v[n : n+int(l)]
		v = v[n+int(l):]
		return s, nil
	}
	t, err := varint()
	if err != nil {
		return err
	}
	ch, err := varint()
	if err != nil {
		return err
	}
	f.Type, f.Channel = casev1.CaseType(t), casev1.Channel(ch)
	f.HasTTFR, f.HasTTC, f.FCR = flags&flagTTFR != 0, flags&flagTTC != 0, flags&flagFCR != 0
	f.TTFR, f.TTC = 0, 0
	if f.HasTTFR {
		x, err := varint()
		if err != nil {
			return err
		}
		f.TTFR = time.Duration(x)
	}
	if f.HasTTC {
		x, err := varint()
		if err != nil {
			return err
		}
		f.TTC = time.Duration(x)
	}
	if !names {
		f.Category, f.Queue, f.Department = nil, nil, nil
		return nil
	}
	if f.Category, err = bytes(); err != nil {
		return err
	}
	if f.Queue, err = bytes(); err != nil {
		return err
	}
	f.Department, err = bytes()
	return err
}

// sortableHour maps an hour to a uint64 whose big-endian bytes sort like
// the time (Unix seconds with the sign bit flipped).
func sortableHour(t time.Time) uint64 { return sortableUnix(t.Unix()) }

func sortableUnix(sec int64) uint64 { return uint64(sec) ^ (1 << 63) }

func unixFromSortable(v uint64) int64 { return int64(v ^ (1 << 63)) }

// hourKey is the hour index key: the sortable hour, then the statistics
// id, so records of one hour are adjacent and the range scan of a query
// touches nothing else.
func hourKey(hour uint64, statisticsID string) []byte {
	b := make([]byte, 0, 8+len(statisticsID))
	b = binary.BigEndian.AppendUint64(b, hour)
	return append(b, statisticsID...)
}

// Outbox entries: field 1 subject, 2 message id, 3 version, 4 data.
func encodeOutbox(m domain.Message) []byte {
	b := make([]byte, 0, 64+len(m.Data))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, m.Subject)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, m.MsgID)
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(m.Version))
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	return protowire.AppendBytes(b, m.Data)
}

func decodeOutbox(b []byte) (domain.Message, error) {
	var m domain.Message
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return m, fmt.Errorf("%w: outbox: %w", errCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType:
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return m, fmt.Errorf("%w: outbox: %w", errCorrupt, protowire.ParseError(k))
			}
			switch num {
			case 1:
				m.Subject = string(v)
			case 2:
				m.MsgID = string(v)
			case 4:
				m.Data = append([]byte(nil), v...)
			}
			n = k
		case typ == protowire.VarintType:
			v, k := protowire.ConsumeVarint(b)
			if k < 0 {
				return m, fmt.Errorf("%w: outbox: %w", errCorrupt, protowire.ParseError(k))
			}
			if num == 3 {
				if v > math.MaxInt64 {
					return m, fmt.Errorf("%w: outbox version", errCorrupt)
				}
				m.Version = int64(v)
			}
			n = k
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return m, fmt.Errorf("%w: outbox: %w", errCorrupt, protowire.ParseError(n))
			}
		}
		b = b[n:]
	}
	return m, nil
}
