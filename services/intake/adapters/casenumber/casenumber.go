// Package casenumber allocates intake's human case numbers (KC-2026-000123)
// in a NATS JetStream key-value bucket, so that every intake instance, in
// one process or on several machines, draws from the same sequence.
//
// # Layout
//
// The bucket holds two kinds of keys:
//
//   - "counter.<year>" holds the last number allocated in that year as
//     decimal text. It is only ever changed with compare-and-set, so two
//     instances can never hand out the same number.
//   - "number.<case number>" holds the id of the case the number was
//     allocated to, so that an Open311 client can look a case up by the
//     number printed on its receipt.
//
// The year is the calendar year in Europe/Stockholm, because that is the
// year the agent and the resident see on the number; a case registered at
// 00:30 on New Year's Day Swedish time belongs to the new year even though
// it is still the old year in UTC.
//
// # Durability
//
// The bucket has no TTL: an expired counter would restart its year at 1 and
// hand out numbers that are already printed on receipts. For the same
// reason allocation refuses to overwrite an existing "number." key, so even a
// counter that an operator reset by hand leads to errors, never to a
// duplicate number.
package casenumber

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
	// Embedded zone data, so that Europe/Stockholm can be loaded in minimal
	// containers (distroless, scratch) that have no /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/jsbatch"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

// Defaults for Config fields left at their zero value.
const (
	// DefaultBucket is the key-value bucket that holds counters and numbers.
	DefaultBucket = "KONTAKT_CASENUMBERS"
	// DefaultPrefix starts every case number ("Kontaktcenter").
	DefaultPrefix = "KC"
	// DefaultLocation names the time zone whose calendar year a number
	// carries.
	DefaultLocation = "Europe/Stockholm"
)

const (
	// maxPrefixLen keeps numbers short enough to read out on the phone.
	maxPrefixLen = 10
	// minDigits is the zero-padded width of the sequence part; larger
	// numbers simply get more digits.
	minDigits = 6
	// maxAttempts bounds how often Next re-reads the counter after losing a
	// compare-and-set to another allocation. Under normal load a handful is
	// plenty; the bound only stops a pathological livelock from holding a
	// request forever when its context has no deadline.
	maxAttempts = 100
	// backoffBase and backoffMax shape the jittered exponential pause after
	// a lost compare-and-set, so that contending instances spread out
	// instead of colliding again in lock step.
	backoffBase = time.Millisecond
	backoffMax  = 50 * time.Millisecond

	counterKeyPrefix = "counter."
	numberKeyPrefix  = "number."
)

// Config configures Numbers. The zero value is valid for a single server.
type Config struct {
	// Bucket is the key-value bucket; empty means DefaultBucket.
	Bucket string
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

// Numbers implements app.CaseNumbers on a JetStream key-value bucket. It is
// safe for concurrent use, and any number of instances (on any number of
// connections) may share one bucket. It does not own the connection.
type Numbers struct {
	kv jetstream.KeyValue
	nc *nats.Conn
	// subject is the bucket's subject prefix, "$KV.<bucket>.", for the
	// atomic batches that write the counter and the numbers together.
	subject string
	prefix  string
	loc     *time.Location
	// local serialises this process's allocations: compare-and-set is
	// only needed between instances, and letting one process's own
	// requests race for the counter makes most of them lose and back off.
	local sync.Mutex
}

// New creates the bucket, or updates it to the configuration Numbers needs,
// and returns Numbers that allocate from it. Updating an existing bucket
// means that a TTL someone set on it by hand is removed again, because an
// expiring counter would produce duplicate numbers.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Numbers, error) {
	if js == nil {
		return nil, errors.New("casenumber: JetStream context is nil")
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
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
	kv, err := openBucket(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	return &Numbers{kv: kv, nc: js.Conn(), subject: "$KV." + cfg.Bucket + ".", prefix: cfg.Prefix, loc: cfg.Location}, nil
}

// openBucket creates the bucket or brings it to the configuration Numbers
// needs: no TTL, one value per key, file storage, the replica count, and
// atomic batches allowed (nats-server 2.12 or later), which Allocate uses
// to move the counter and record the numbers in one write. A bucket that
// is already right is left alone, so that starting an instance does not
// briefly switch atomic batches off under the running ones (a standard KV
// update would).
func openBucket(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.KeyValue, error) {
	if st, err := js.Stream(ctx, "KV_"+cfg.Bucket); err == nil && bucketReady(st.CachedInfo().Config, cfg) {
		return js.KeyValue(ctx, cfg.Bucket)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "kontakt intake case numbers: per-year counters and number-to-case mapping",
		// One value per key is enough: counters only move forward and
		// number keys are written once.
		History:  1,
		TTL:      0,
		Storage:  jetstream.FileStorage,
		Replicas: cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("casenumber: create or update key-value bucket %q: %w", cfg.Bucket, err)
	}
	st, err := js.Stream(ctx, "KV_"+cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("casenumber: key-value bucket %q: %w", cfg.Bucket, err)
	}
	sc := st.CachedInfo().Config
	sc.AllowAtomicPublish = true
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		return nil, fmt.Errorf("casenumber: allow atomic batches in key-value bucket %q: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// bucketReady reports whether an existing bucket stream already has the
// configuration openBucket would give it.
func bucketReady(c jetstream.StreamConfig, cfg Config) bool {
	return c.MaxAge == 0 && c.MaxMsgsPerSubject == 1 && c.Storage == jetstream.FileStorage &&
		c.Replicas == cfg.Replicas && c.AllowAtomicPublish && !c.AllowMsgTTL
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
// a year, and records which case each belongs to.
//
// For each year it is one atomic batch: the counter's compare-and-set and
// the number-to-case records are stored together or not at all, with one
// disk sync. Numbers are unique and increasing within a year across all
// instances, and a year's numbers have no gaps as long as every
// allocation succeeds. A number is never reused: if the acknowledgement
// is lost, or the caller's registration fails after Allocate returned,
// those numbers stay unused and leave a gap. Reusing them would risk two
// cases with one number, which is worse than a gap.
//
// If a number the counter points at is already recorded (somebody reset
// the counter by hand), or the server does not take atomic batches,
// Allocate falls back to moving the counter and recording the numbers one
// by one, as before batches existed: a taken number then fails the
// allocation and is skipped, so the counter recovers by moving past it.
//
// When Allocate keeps losing the compare-and-set to other allocations it
// gives up with an error wrapping app.ErrRevisionMismatch; it also stops
// when ctx is done.
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
		caseIDs := make([]string, len(idx))
		for j, i := range idx {
			caseIDs[j] = reqs[i].CaseID
		}
		numbers, err := n.allocateYear(ctx, year, caseIDs)
		if err != nil {
			return nil, err
		}
		for j, i := range idx {
			out[i] = numbers[j]
		}
	}
	return out, nil
}

// errOneByOne tells allocateYear to use the one-by-one path.
var errOneByOne = errors.New("casenumber: atomic batch not possible")

// allocateYear allocates len(caseIDs) consecutive numbers of one year.
func (n *Numbers) allocateYear(ctx context.Context, year int, caseIDs []string) ([]string, error) {
	if len(caseIDs)+1 > jsbatch.MaxMessages {
		return nil, fmt.Errorf("casenumber: allocate %d numbers: at most %d at once", len(caseIDs), jsbatch.MaxMessages-1)
	}
	key := counterKeyPrefix + strconv.Itoa(year)
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("casenumber: allocate numbers for %d: %w", year, err)
		}
		numbers, lost, err := n.tryAllocateBatch(ctx, key, year, caseIDs)
		if errors.Is(err, errOneByOne) {
			return n.allocateOneByOne(ctx, year, caseIDs)
		}
		if err != nil {
			return nil, fmt.Errorf("casenumber: allocate numbers for %d: %w", year, err)
		}
		if !lost {
			return numbers, nil
		}
		if attempt >= maxAttempts {
			return nil, fmt.Errorf("casenumber: allocate numbers for %d: lost the counter to other allocations %d times: %w",
				year, attempt, app.ErrRevisionMismatch)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return nil, fmt.Errorf("casenumber: allocate numbers for %d: %w", year, err)
		}
	}
}

// tryAllocateBatch makes one attempt to move the counter by len(caseIDs)
// and record the numbers, in one atomic batch. lost reports that another
// allocation changed the counter first.
func (n *Numbers) tryAllocateBatch(ctx context.Context, key string, year int, caseIDs []string) (numbers []string, lost bool, err error) {
	last, rev, err := n.readCounter(ctx, key)
	if err != nil {
		return nil, false, err
	}
	k := uint64(len(caseIDs))
	counter := nats.NewMsg(n.subject + key)
	counter.Data = []byte(strconv.FormatUint(last+k, 10))
	counter.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	msgs := []*nats.Msg{counter}
	numbers = make([]string, len(caseIDs))
	for i, caseID := range caseIDs {
		numbers[i] = n.format(year, last+1+uint64(i))
		m := nats.NewMsg(n.subject + numberKeyPrefix + numbers[i])
		m.Data = []byte(caseID)
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		msgs = append(msgs, m)
	}
	_, err = jsbatch.Publish(ctx, n.nc, msgs)
	switch {
	case err == nil:
		return numbers, false, nil
	case jsbatch.IsCode(err, jsbatch.ErrCodeDisabled):
		return nil, false, errOneByOne
	case !jsbatch.IsCode(err, jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant):
		return nil, false, fmt.Errorf("store counter %q and %d numbers: %w", key, k, err)
	}
	// Refused: did the counter move, or is one of the numbers taken?
	_, now, rerr := n.readCounter(ctx, key)
	if rerr != nil {
		return nil, false, rerr
	}
	if now != rev {
		return nil, true, nil
	}
	return nil, false, errOneByOne
}

// readCounter returns the counter's value and its revision (0, 0 when the
// year has no counter yet).
func (n *Numbers) readCounter(ctx context.Context, key string) (last, rev uint64, err error) {
	entry, err := n.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, 0, nil
	case err != nil:
		return 0, 0, fmt.Errorf("read counter %q: %w", key, err)
	}
	last, err = strconv.ParseUint(string(entry.Value()), 10, 64)
	if err != nil {
		// Never overwrite a counter we cannot read: guessing could reuse
		// numbers.
		return 0, 0, fmt.Errorf("counter %q holds %q, not a number: %w", key, entry.Value(), err)
	}
	return last, entry.Revision(), nil
}

// allocateOneByOne is the path without atomic batches: each number is a
// compare-and-set of the counter followed by its record. A failure leaves
// the numbers allocated so far unused.
func (n *Numbers) allocateOneByOne(ctx context.Context, year int, caseIDs []string) ([]string, error) {
	numbers := make([]string, len(caseIDs))
	for i, caseID := range caseIDs {
		seq, err := n.allocate(ctx, year)
		if err != nil {
			return nil, err
		}
		numbers[i] = n.format(year, seq)
		if err := n.remember(ctx, numbers[i], caseID); err != nil {
			return nil, err
		}
	}
	return numbers, nil
}

// allocate moves the year's counter forward by one with compare-and-set
// and returns the new value.
func (n *Numbers) allocate(ctx context.Context, year int) (uint64, error) {
	key := counterKeyPrefix + strconv.Itoa(year)
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("casenumber: allocate number for %d: %w", year, err)
		}
		seq, lost, err := n.tryAllocate(ctx, key)
		if err != nil {
			return 0, fmt.Errorf("casenumber: allocate number for %d: %w", year, err)
		}
		if !lost {
			return seq, nil
		}
		if attempt >= maxAttempts {
			return 0, fmt.Errorf("casenumber: allocate number for %d: lost the counter to other allocations %d times: %w",
				year, attempt, app.ErrRevisionMismatch)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return 0, fmt.Errorf("casenumber: allocate number for %d: %w", year, err)
		}
	}
}

// tryAllocate makes one compare-and-set attempt on the counter. lost
// reports that another allocation changed the counter first.
func (n *Numbers) tryAllocate(ctx context.Context, key string) (seq uint64, lost bool, err error) {
	entry, err := n.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// The first number of the year: Create fails if another instance
		// created the counter in the meantime.
		if _, err := n.kv.Create(ctx, key, []byte("1")); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return 0, true, nil
			}
			return 0, false, fmt.Errorf("create counter %q: %w", key, err)
		}
		return 1, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("read counter %q: %w", key, err)
	}
	last, err := strconv.ParseUint(string(entry.Value()), 10, 64)
	if err != nil {
		// Never overwrite a counter we cannot read: guessing could reuse
		// numbers.
		return 0, false, fmt.Errorf("counter %q holds %q, not a number: %w", key, entry.Value(), err)
	}
	seq = last + 1
	if _, err := n.kv.Update(ctx, key, []byte(strconv.FormatUint(seq, 10)), entry.Revision()); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, true, nil
		}
		return 0, false, fmt.Errorf("update counter %q: %w", key, err)
	}
	return seq, false, nil
}

// remember stores which case number belongs to. It refuses to overwrite a
// number that is already taken, so a counter that went backwards shows up
// as errors instead of duplicate numbers. If a previous attempt stored the
// same case id (its acknowledgement was lost), that counts as success.
func (n *Numbers) remember(ctx context.Context, number, caseID string) error {
	key := numberKeyPrefix + number
	_, err := n.kv.Create(ctx, key, []byte(caseID))
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("casenumber: store case of number %s (the number stays unused): %w", number, err)
	}
	entry, getErr := n.kv.Get(ctx, key)
	if getErr != nil {
		return fmt.Errorf("casenumber: store case of number %s (the number stays unused): %w", number, errors.Join(err, getErr))
	}
	if string(entry.Value()) != caseID {
		return fmt.Errorf("casenumber: number %s is already taken by another case; was the counter reset? %w", number, err)
	}
	return nil
}

// Lookup returns the id of the case number was allocated to. Because the
// number comes from the public Open311 API, it is checked strictly against
// the canonical format first (this prefix, a four-digit year, at least six
// digits with no superfluous leading zero); anything else, and any number
// that was never allocated, gives an error wrapping app.ErrNotFound.
func (n *Numbers) Lookup(ctx context.Context, number string) (string, error) {
	if !n.valid(number) {
		// The input is not echoed: it comes from the internet and may be
		// anything, including a resident's personal data.
		return "", fmt.Errorf("casenumber: lookup: malformed case number: %w", app.ErrNotFound)
	}
	entry, err := n.kv.Get(ctx, numberKeyPrefix+number)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("casenumber: lookup %s: %w", number, app.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("casenumber: lookup %s: %w", number, err)
	}
	return string(entry.Value()), nil
}

// format renders a number in its canonical form.
func (n *Numbers) format(year int, seq uint64) string {
	return fmt.Sprintf("%s-%04d-%0*d", n.prefix, year, minDigits, seq)
}

// valid reports whether number is in canonical form: parsing it and
// formatting the result again must give back exactly the same string, which
// rules out signs, spaces, non-ASCII digits and extra leading zeros.
func (n *Numbers) valid(number string) bool {
	// Prefix, two dashes, four year digits, at most 20 sequence digits.
	if len(number) > len(n.prefix)+2+4+20 {
		return false
	}
	rest, ok := strings.CutPrefix(number, n.prefix+"-")
	if !ok {
		return false
	}
	yearPart, seqPart, ok := strings.Cut(rest, "-")
	if !ok || !digits(yearPart) || !digits(seqPart) {
		return false
	}
	year, err := strconv.Atoi(yearPart)
	if err != nil || year < 1000 || year > 9999 {
		return false
	}
	seq, err := strconv.ParseUint(seqPart, 10, 64)
	if err != nil || seq == 0 {
		return false
	}
	return n.format(year, seq) == number
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

// backoff returns a random pause ("full jitter") below an exponentially
// growing ceiling, so that instances that just collided do not collide
// again at once.
func backoff(attempt int) time.Duration {
	ceiling := backoffMax
	if attempt < 16 {
		ceiling = min(backoffBase<<attempt, backoffMax)
	}
	return rand.N(ceiling) + 1
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
