package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// memSnapshot is a process's memory as Linux reports it, in bytes.
//
// private is what the figures call "private memory": Private_Clean plus
// Private_Dirty from /proc/<pid>/smaps_rollup, the pages mapped by this
// process alone. It counts the anonymous memory (the Go heap, stacks) and
// the file pages only this process maps (its own binary's text, the bbolt
// files it has mmapped and touched), and leaves out pages shared with
// other processes. rss, anon and file are VmRSS, RssAnon and RssFile from
// /proc/<pid>/status; peak is VmHWM, the highest RSS the process reached.
type memSnapshot struct {
	rss, peak, anon, file, privateClean, privateDirty uint64
}

func (m memSnapshot) private() uint64 { return m.privateClean + m.privateDirty }

func (m memSnapshot) String() string {
	return fmt.Sprintf("private %.1f MiB (clean %.1f, dirty %.1f), RSS %.1f MiB (anon %.1f, file %.1f), peak RSS %.1f MiB",
		mib(m.private()), mib(m.privateClean), mib(m.privateDirty), mib(m.rss), mib(m.anon), mib(m.file), mib(m.peak))
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// readMem reads pid's memory from /proc.
func readMem(pid int) (memSnapshot, error) {
	var m memSnapshot
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, err
	}
	fields := map[string]*uint64{
		"VmRSS:": &m.rss, "VmHWM:": &m.peak, "RssAnon:": &m.anon, "RssFile:": &m.file,
		"Private_Clean:": &m.privateClean, "Private_Dirty:": &m.privateDirty,
	}
	found := 0
	for _, text := range [][]byte{status, rollup} {
		sc := bufio.NewScanner(bytes.NewReader(text))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[2] != "kB" {
				continue
			}
			if p, ok := fields[f[0]]; ok {
				kb, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil {
					return m, fmt.Errorf("/proc/%d: %s %q: %w", pid, f[0], f[1], err)
				}
				*p = kb << 10
				found++
			}
		}
	}
	if found != len(fields) {
		return m, fmt.Errorf("/proc/%d: found %d of the %d memory fields", pid, found, len(fields))
	}
	return m, nil
}

// clockTicksPerSecond is USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat: 100 on every Linux architecture Go runs on (the
// kernel fixes it for user space whatever its own tick rate).
const clockTicksPerSecond = 100

// cpuTime is the CPU time (user plus system) pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold blanks:
	// count fields from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state is field 3 of stat(5), so utime (14) and stime (15)
	// are at 11 and 12 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicksPerSecond, nil
}

// waitQuiet waits until pid has used at most 2% of one core over the last
// two seconds: the sign, seen from outside, that a process which is not
// being called has finished its start-up work (for kontakt, the router's
// scan for unrouted cases, which runs at start and every five minutes).
// It returns when that was, or an error after timeout.
func waitQuiet(pid int, timeout time.Duration) (time.Time, error) {
	const (
		window = 2 * time.Second
		step   = 250 * time.Millisecond
		budget = window / 50
	)
	type sample struct {
		at  time.Time
		cpu time.Duration
	}
	var samples []sample
	deadline := time.Now().Add(timeout)
	for {
		cpu, err := cpuTime(pid)
		if err != nil {
			return time.Time{}, err
		}
		now := time.Now()
		samples = append(samples, sample{now, cpu})
		for len(samples) > 1 && now.Sub(samples[1].at) >= window {
			samples = samples[1:]
		}
		if first := samples[0]; now.Sub(first.at) >= window && cpu-first.cpu <= budget {
			return now, nil
		}
		if now.After(deadline) {
			first := samples[0]
			return time.Time{}, fmt.Errorf("process %d still busy after %s: %s CPU in the last %s", pid, timeout, cpu-first.cpu, now.Sub(first.at).Round(time.Millisecond))
		}
		time.Sleep(step)
	}
}
