// Package casenumber allocates intake's human case numbers (KC-2026-000123)
// in a NATS JetStream stream, so that every intake instance, in one
// process or on several machines, draws from the same sequence.
//
// # Layout
//
// The stream (DefaultStream) has one subject per year,
// "kontakt.casenumbers.<year>", and every message on it is a block: the
// first number it allocates and the ids of the cases the block's numbers
// belong to, in order. The year's counter is the last number of its last
// block. An allocation publishes the next block with "expected last
// subject sequence", so of two instances that read the same last block
// only one can append after it, and no number is handed out twice.
//
// A block is one write however many numbers it holds, which is what lets
// intake's group commit number a whole group of registrations with one
// disk sync; and the counter and the number-to-case records can never
// disagree, because they are the same message.
//
// Lookup finds the block holding a number by binary search over the
// year's blocks (a message get by subject at or after a sequence), a
// handful of reads for years of blocks.
//
// The year is the calendar year in Europe/Stockholm, because that is the
// year the agent and the resident see on the number; a case registered at
// 00:30 on New Year's Day Swedish time belongs to the new year even though
// it is still the old year in UTC.
//
// # Durability
//
// The stream keeps every block for ever and denies deletes and purges: a
// lost block would let its numbers be handed out again although they are
// already printed on receipts.
package casenumber

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	// Embedded zone data, so that Europe/Stockholm can be loaded in minimal
	// containers (distroless, scratch) that have no /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/natserr"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

// Defaults for Config fields left at their zero value.
const (
	// DefaultStream is the stream that holds the blocks.
	DefaultStream = "KONTAKT_CASENUMBER_BLOCKS"
	// DefaultPrefix starts every case number ("Kontaktcenter").
	DefaultPrefix = "KC"
	// DefaultLocation names the time zone whose calendar year a number
	// carries.
	DefaultLocation = "Europe/Stockholm"
	// SubjectPrefix starts the per-year subjects of the blocks.
	SubjectPrefix = "kontakt.casenumbers"
)

const (
	// maxPrefixLen keeps numbers short enough to read out on the phone.
	maxPrefixLen = 10
	// minDigits is the zero-padded width of the sequence part; larger
	// numbers simply get more digits.
	minDigits = 6
	// maxAttempts bounds how often an allocation re-reads the last block
	// after losing to another allocation. Under normal load a handful is
	// plenty; the bound only stops a pathological livelock from holding a
	// request forever when its context has no deadline.
	maxAttempts = 100
	// maxBlock bounds the numbers of one block (and so its message size:
	// a case id is at most 36 bytes).
	maxBlock = 4096
)

// lostRace paces the attempts after a lost allocation: a jittered pause
// below a ceiling that grows from 1 ms to 50 ms, so that contending
// instances spread out instead of colliding again in lock step.
var lostRace = backoff.Policy{Initial: time.Millisecond, Max: 50 * time.Millisecond, Jitter: true}

// Config configures Numbers. The zero value is valid for a single server.
type Config struct {
	// Stream is the stream of blocks; empty means DefaultStream.
	Stream string
	// Replicas is the JetStream replica count: zero means 1 (a single
	// server); clusters should use 3, because a number must not be handed
	// out twice after the loss of a node.
	Replicas int
	// Prefix starts every number; empty means DefaultPrefix. It must be 1
	// to 10 upper-case ASCII letters, so that numbers are easy to read out
	// and can be parsed back without ambiguity.
	Prefix string
	// Location is the time zone whose calendar year a number carries; nil
	// means Europe/Stockholm.
	Location *time.Location
}

// Numbers implements app.CaseNumbers on a JetStream stream. It is safe for
// concurrent use, and any number of instances (on any number of
// connections) may share one stream. It does not own the connection.
type Numbers struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	prefix string
	loc    *time.Location
	// local serialises this process's allocations, and guards last:
	// compare-and-set is only needed between instances.
	local sync.Mutex
	// last caches, per year, the last number and the sequence of the
	// block this process appended last, so an instance that allocates
	// alone does not read before each block. A refused append drops it.
	last map[int]head
}

// head is where a year's sequence stands.
type head struct {
	last uint64 // the last number allocated
	seq  uint64 // the stream sequence of the block holding it (0: none)
}

// block is the payload of a block message.
type block struct {
	First uint64   `json:"first"`
	Cases []string `json:"cases"`
}

func (b block) lastNumber() uint64 { return b.First + uint64(len(b.Cases)) - 1 }

// New creates the stream, or updates it to the configuration Numbers
// needs, and returns Numbers that allocate from it.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Numbers, error) {
	if js == nil {
		return nil, errors.New("casenumber: JetStream context is nil")
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if err := validatePrefix(cfg.Prefix); err != nil {
		return nil, err
	}
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		return nil, fmt.Errorf("casenumber: replicas %d out of range 1..5", cfg.Replicas)
	}
	if cfg.Location == nil {
		loc, err := time.LoadLocation(DefaultLocation)
		if err != nil {
			// Unreachable in practice: time/tzdata is linked in.
			return nil, fmt.Errorf("casenumber: load time zone %s: %w", DefaultLocation, err)
		}
		cfg.Location = loc
	}
	st, err := js.CreateOrUpdateStream(ctx, StreamConfig(cfg.Stream, cfg.Replicas))
	if err != nil {
		return nil, fmt.Errorf("casenumber: create or update stream %q: %w", cfg.Stream, err)
	}
	return &Numbers{js: js, stream: st, prefix: cfg.Prefix, loc: cfg.Location, last: map[int]head{}}, nil
}

// StreamConfig is the configuration New gives the stream: file storage,
// every block kept for ever, deletes and purges denied (a lost block would
// hand its numbers out again), and reads from the leader only, so a
// lagging replica never hides the last block.
func StreamConfig(name string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              name,
		Description:       "kontakt intake case numbers: one message per block of numbers, per year",
		Subjects:          []string{SubjectPrefix + ".*"},
		Retention:         jetstream.LimitsPolicy,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		MaxAge:            0,
		MaxConsumers:      -1,
		Discard:           jetstream.DiscardNew,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		Duplicates:        2 * time.Minute,
		DenyDelete:        true,
		DenyPurge:         true,
		AllowDirect:       false,
	}
}

// validatePrefix accepts 1 to maxPrefixLen upper-case ASCII letters, which
// are KV-safe and never contain the '-' that separates a number's parts.
func validatePrefix(p string) error {
	if len(p) > maxPrefixLen {
		return fmt.Errorf("casenumber: prefix %q is longer than %d letters", p, maxPrefixLen)
	}
	for i := range len(p) {
		if p[i] < 'A' || p[i] > 'Z' {
			return fmt.Errorf("casenumber: prefix %q must consist of upper-case ASCII letters", p)
		}
	}
	return nil
}

// Next allocates the next number of the year that at falls in (in the
// configured time zone) and records that it belongs to caseID. It is
// Allocate for one case.
func (n *Numbers) Next(ctx context.Context, at time.Time, caseID string) (string, error) {
	numbers, err := n.Allocate(ctx, []app.Allocation{{At: at, CaseID: caseID}})
	if err != nil {
		return "", err
	}
	return numbers[0], nil
}

// Allocate allocates one number per request, in the year its At falls in
// (in the configured time zone), consecutive and in request order within
// a year, and records which case each belongs to: one block per year, one
// write each.
//
// Numbers are unique and increasing within a year across all instances,
// and a year's numbers have no gaps as long as every registration that got
// one succeeds. A number is never reused: if the caller's registration
// fails after Allocate returned, its number stays unused and leaves a gap
// (and its block still names the case, which never carries it). Reusing
// it would risk two cases with one number, which is worse than a gap.
//
// When Allocate keeps losing to other allocations it gives up with an
// error wrapping app.ErrRevisionMismatch; it also stops when ctx is done.
func (n *Numbers) Allocate(ctx context.Context, reqs []app.Allocation) ([]string, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	var years []int
	byYear := map[int][]int{}
	for i, r := range reqs {
		if r.CaseID == "" {
			return nil, errors.New("casenumber: allocate: case id is empty")
		}
		year := r.At.In(n.loc).Year()
		if year < 1000 || year > 9999 {
			// A zero or absurd time is a caller bug; a number with a year
			// of a different width could not be parsed back by Lookup.
			return nil, fmt.Errorf("casenumber: allocate: year %d of %s is outside 1000..9999", year, r.At.Format(time.RFC3339))
		}
		if _, ok := byYear[year]; !ok {
			years = append(years, year)
		}
		byYear[year] = append(byYear[year], i)
	}
	out := make([]string, len(reqs))
	n.local.Lock()
	defer n.local.Unlock()
	for _, year := range years {
		idx := byYear[year]
		for start := 0; start < len(idx); start += maxBlock {
			part := idx[start:min(start+maxBlock, len(idx))]
			caseIDs := make([]string, len(part))
			for j, i := range part {
				caseIDs[j] = reqs[i].CaseID
			}
			first, err := n.appendBlock(ctx, year, caseIDs)
			if err != nil {
				return nil, err
			}
			for j, i := range part {
				out[i] = n.format(year, first+uint64(j))
			}
		}
	}
	return out, nil
}

// appendBlock appends the year's next block for caseIDs and returns its
// first number. Caller holds n.local.
func (n *Numbers) appendBlock(ctx context.Context, year int, caseIDs []string) (uint64, error) {
	subject := n.subject(year)
	pause := backoff.New(lostRace)
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("casenumber: allocate numbers for %d: %w", year, err)
		}
		h, err := n.head(ctx, year)
		if err != nil {
			return 0, fmt.Errorf("casenumber: allocate numbers for %d: %w", year, err)
		}
		b := block{First: h.last + 1, Cases: caseIDs}
		data, err := json.Marshal(b)
		if err != nil {
			return 0, fmt.Errorf("casenumber: encode block: %w", err)
		}
		// The id names this very block (year, first number and cases), so
		// recognising it later can only ever find our own write.
		sum := sha256.Sum256(append([]byte(subject+"\x00"), data...))
		id := hex.EncodeToString(sum[:16])
		msg := nats.NewMsg(subject)
		msg.Data = data
		msg.Header.Set(jetstream.MsgIDHeader, id)
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(h.seq, 10))

		seq, lost, err := n.publish(ctx, msg, h.seq, id)
		if err != nil {
			delete(n.last, year)
			return 0, fmt.Errorf("casenumber: allocate numbers for %d (unknown whether block %d was stored; its numbers are never reused): %w", year, b.First, err)
		}
		if !lost {
			n.last[year] = head{last: b.lastNumber(), seq: seq}
			return b.First, nil
		}
		delete(n.last, year)
		if attempt >= maxAttempts {
			return 0, fmt.Errorf("casenumber: allocate numbers for %d: lost to other allocations %d times: %w",
				year, attempt, app.ErrRevisionMismatch)
		}
		if err := pause.Wait(ctx); err != nil {
			return 0, fmt.Errorf("casenumber: allocate numbers for %d: %w", year, err)
		}
	}
}

// publish appends msg, expecting after as the subject's last sequence. A
// refusal is a lost race unless the block after `after` is this one (an
// earlier attempt landed although its acknowledgement was lost); an
// unknown outcome is retried with the same message, which the server
// de-duplicates or refuses, so it is then recognised the same way.
func (n *Numbers) publish(ctx context.Context, msg *nats.Msg, after uint64, id string) (seq uint64, lost bool, err error) {
	err = backoff.Retry(ctx, backoff.UnknownOutcome, func() error {
		ack, err := n.js.PublishMsg(ctx, msg)
		if err == nil {
			seq = ack.Sequence
			return nil
		}
		switch {
		case natserr.IsWrongLastSequence(err):
		case natserr.IsRefusal(err):
			return backoff.Permanent(err)
		default:
			return err
		}
		next, gerr := n.stream.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(msg.Subject))
		switch {
		case gerr == nil && next.Header.Get(jetstream.MsgIDHeader) == id:
			seq = next.Sequence
		case gerr != nil && !natserr.IsMessageNotFound(gerr):
			return backoff.Permanent(gerr)
		default:
			lost = true
		}
		return nil
	})
	return seq, lost, err
}

// head returns where the year stands: cached, or read from the last
// block; a year without blocks starts at zero.
func (n *Numbers) head(ctx context.Context, year int) (head, error) {
	if h, ok := n.last[year]; ok {
		return h, nil
	}
	m, err := n.stream.GetLastMsgForSubject(ctx, n.subject(year))
	switch {
	case err == nil:
		b, err := decodeBlock(m.Data)
		if err != nil {
			return head{}, fmt.Errorf("block %d: %w", m.Sequence, err)
		}
		return head{last: b.lastNumber(), seq: m.Sequence}, nil
	case !natserr.IsMessageNotFound(err):
		return head{}, fmt.Errorf("read last block: %w", err)
	}
	return head{}, nil
}

// Lookup returns the id of the case number was allocated to. Because the
// number comes from the public Open311 API, it is checked strictly against
// the canonical format first (this prefix, a four-digit year, at least six
// digits with no superfluous leading zero); anything else, and any number
// that was never allocated, gives an error wrapping app.ErrNotFound.
func (n *Numbers) Lookup(ctx context.Context, number string) (string, error) {
	year, seqNum, ok := n.parse(number)
	if !ok {
		// The input is not echoed: it comes from the internet and may be
		// anything, including a resident's personal data.
		return "", fmt.Errorf("casenumber: lookup: malformed case number: %w", app.ErrNotFound)
	}
	subject := n.subject(year)
	last, err := n.stream.GetLastMsgForSubject(ctx, subject)
	if natserr.IsMessageNotFound(err) {
		return "", fmt.Errorf("casenumber: lookup %s: %w", number, app.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("casenumber: lookup %s: %w", number, err)
	}
	firstMsg, err := n.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
	if err != nil {
		return "", fmt.Errorf("casenumber: lookup %s: %w", number, err)
	}
	if b, err := decodeBlock(firstMsg.Data); err == nil && seqNum < b.First {
		return "", fmt.Errorf("casenumber: lookup %s: %w", number, app.ErrNotFound)
	}
	lo, hi := firstMsg.Sequence, last.Sequence
	for lo <= hi {
		mid := lo + (hi-lo)/2
		// The first block at or after mid; there is one, because hi is a
		// block of the subject, and none between mid and it.
		m, err := n.stream.GetMsg(ctx, mid, jetstream.WithGetMsgSubject(subject))
		if err != nil {
			return "", fmt.Errorf("casenumber: lookup %s: %w", number, err)
		}
		b, err := decodeBlock(m.Data)
		if err != nil {
			return "", fmt.Errorf("casenumber: lookup %s: block %d: %w", number, m.Sequence, err)
		}
		switch {
		case seqNum < b.First:
			hi = mid - 1
		case seqNum > b.lastNumber():
			lo = m.Sequence + 1
		default:
			return b.Cases[seqNum-b.First], nil
		}
	}
	return "", fmt.Errorf("casenumber: lookup %s: %w", number, app.ErrNotFound)
}

func (n *Numbers) subject(year int) string { return SubjectPrefix + "." + strconv.Itoa(year) }

// decodeBlock reads a block and refuses one that could not have been
// written by Allocate.
func decodeBlock(data []byte) (block, error) {
	var b block
	if err := json.Unmarshal(data, &b); err != nil {
		return block{}, fmt.Errorf("undecodable block: %w", err)
	}
	if b.First == 0 || len(b.Cases) == 0 {
		return block{}, errors.New("empty block")
	}
	return b, nil
}

// format renders a number in its canonical form.
func (n *Numbers) format(year int, seq uint64) string {
	return fmt.Sprintf("%s-%04d-%0*d", n.prefix, year, minDigits, seq)
}

// parse reads a number in canonical form: parsing it and formatting the
// result again must give back exactly the same string, which rules out
// signs, spaces, non-ASCII digits and extra leading zeros.
func (n *Numbers) parse(number string) (year int, seq uint64, ok bool) {
	// Prefix, two dashes, four year digits, at most 20 sequence digits.
	if len(number) > len(n.prefix)+2+4+20 {
		return 0, 0, false
	}
	rest, ok := strings.CutPrefix(number, n.prefix+"-")
	if !ok {
		return 0, 0, false
	}
	yearPart, seqPart, ok := strings.Cut(rest, "-")
	if !ok || !digits(yearPart) || !digits(seqPart) {
		return 0, 0, false
	}
	year, err := strconv.Atoi(yearPart)
	if err != nil || year < 1000 || year > 9999 {
		return 0, 0, false
	}
	seq, err = strconv.ParseUint(seqPart, 10, 64)
	if err != nil || seq == 0 {
		return 0, 0, false
	}
	return year, seq, n.format(year, seq) == number
}

// digits reports whether s is a non-empty string of ASCII digits.
func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
