// Package casenames is the one table between the case type and channel
// enums of kontakt/case/v1 and the short names people write in the
// configuration file, the routing rules and the retention plan, and that
// receipts, the retention index and messages show: "fraga", "felanmalan",
// "synpunkt", "brev"; "phone", "email", "form", "letter", "visit", "chat".
//
// The names are the enum value names without their prefix, in lower case,
// read from the generated descriptor: a value added to the proto is named
// here, and everywhere that reads these files, without a second table to
// forget.
package casenames

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

const (
	typePrefix    = "CASE_TYPE_"
	channelPrefix = "CHANNEL_"
	statusPrefix  = "CASE_STATUS_"
)

// swedishTypes are the Swedish spellings accepted for the ASCII names,
// because that is how the people who edit the files write them. The ASCII
// name stays the canonical one that is shown.
var swedishTypes = map[string]casev1.CaseType{
	"fråga":      casev1.CaseType_CASE_TYPE_FRAGA,
	"felanmälan": casev1.CaseType_CASE_TYPE_FELANMALAN,
}

// table holds one enum's values (without UNSPECIFIED) in the order the
// proto declares them, and the reverse lookup of their names.
type table[E ~int32] struct {
	values []E
	names  []string
	byName map[string]E
}

func newTable[E ~int32](d protoreflect.EnumDescriptor, prefix string) table[E] {
	t := table[E]{byName: map[string]E{}}
	vs := d.Values()
	for i := range vs.Len() {
		v := vs.Get(i)
		if v.Number() == 0 {
			continue // UNSPECIFIED is no value anyone may write.
		}
		name := short(string(v.Name()), prefix)
		t.values = append(t.values, E(v.Number()))
		t.names = append(t.names, name)
		t.byName[name] = E(v.Number())
	}
	return t
}

var (
	types    = newTable[casev1.CaseType](casev1.CaseType(0).Descriptor(), typePrefix)
	channels = newTable[casev1.Channel](casev1.Channel(0).Descriptor(), channelPrefix)
)

func short(enumName, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(enumName, prefix))
}

// Type returns the short name of a case type ("fraga"). A value this build
// does not know, and UNSPECIFIED, get the same treatment of the enum's
// String ("unspecified", "7"), so that nothing is ever named "".
func Type(t casev1.CaseType) string { return short(t.String(), typePrefix) }

// Channel returns the short name of a channel ("phone"), like Type.
func Channel(c casev1.Channel) string { return short(c.String(), channelPrefix) }

// Status returns the short name of a case status ("assigned"), like Type:
// how `kontakt check` names a status.
func Status(s casev1.CaseStatus) string { return short(s.String(), statusPrefix) }

// ParseType returns the case type a name stands for: a short name or one
// of its Swedish spellings ("fråga"). Names are exact: no case folding, no
// trimming.
func ParseType(name string) (casev1.CaseType, bool) {
	if t, ok := types.byName[name]; ok {
		return t, true
	}
	if t, ok := swedishTypes[name]; ok {
		return t, true
	}
	return casev1.CaseType_CASE_TYPE_UNSPECIFIED, false
}

// ParseChannel returns the channel a short name stands for.
func ParseChannel(name string) (casev1.Channel, bool) {
	if c, ok := channels.byName[name]; ok {
		return c, true
	}
	return casev1.Channel_CHANNEL_UNSPECIFIED, false
}

// Types lists every case type (not UNSPECIFIED) in the order of the proto,
// which is the order messages name them in.
func Types() []casev1.CaseType { return append([]casev1.CaseType(nil), types.values...) }

// Channels lists every channel (not UNSPECIFIED) in the order of the proto.
func Channels() []casev1.Channel { return append([]casev1.Channel(nil), channels.values...) }

// TypeNames lists the short names of Types, for messages that say what is
// known.
func TypeNames() []string { return append([]string(nil), types.names...) }

// ChannelNames lists the short names of Channels.
func ChannelNames() []string { return append([]string(nil), channels.names...) }
