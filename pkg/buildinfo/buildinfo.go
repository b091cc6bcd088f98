// Package buildinfo says which kontakt is running: its version, the commit
// it was built from, the Go and NATS server versions inside it and the
// version of the data format it writes. An operator needs all five to tell
// whether a fault report, a backup or a data directory belongs to the
// binary at hand; `kontakt version` prints them and the
// kontakt_build_info metric exports them.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// Version is the release this binary was built as. The Makefile sets it
// with -ldflags "-X .../pkg/buildinfo.Version=<git describe>"; a plain
// `go build` leaves "dev", which never looks like a release.
var Version = "dev"

// Commit is the git commit the binary was built from, set by the Makefile
// the same way. Left empty, Read takes it from the version-control stamp
// the Go toolchain writes when it may (not with -buildvcs=false).
var Commit = ""

// DataFormat is the version of what kontakt writes to disk and to its
// streams: the event envelopes, the key records, the read-model files and
// the shred journal. It changes only when a newer binary cannot read what
// an older one wrote without help; a backup records it, and a release that
// raises it says how to move a data directory across.
const DataFormat = 1

// Info is the identity of the running binary.
type Info struct {
	Version    string `json:"version"`
	Commit     string `json:"commit"`
	Modified   bool   `json:"modified"`
	GoVersion  string `json:"go_version"`
	NATS       string `json:"nats_server_version"`
	DataFormat int    `json:"data_format"`
}

// Read returns the identity of this binary. The commit is the one the
// Makefile wrote in, else the toolchain's version-control stamp; it is
// "unknown" when the build had neither (a source tarball built by hand).
func Read() Info {
	info := Info{Version: Version, Commit: "unknown", GoVersion: runtime.Version(), NATS: natsserver.VERSION, DataFormat: DataFormat}
	if Commit != "" {
		info.Commit = Commit
	} else if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	return info
}

// String is the one line `kontakt --version` prints.
func (i Info) String() string {
	commit := i.Commit
	if i.Modified {
		commit += "+modified"
	}
	return fmt.Sprintf("kontakt %s (commit %s, %s, nats-server %s, data format %d)", i.Version, commit, i.GoVersion, i.NATS, i.DataFormat)
}

// Collector is the kontakt_build_info gauge: always 1, with the identity
// as labels, the Prometheus convention for joining a binary's version onto
// its other series.
func (i Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kontakt_build_info",
		Help: "The running kontakt binary: version, commit, Go and NATS server versions and data format, as labels; always 1.",
		ConstLabels: prometheus.Labels{
			"version":     i.Version,
			"commit":      i.Commit,
			"goversion":   i.GoVersion,
			"nats_server": i.NATS,
			"data_format": fmt.Sprint(i.DataFormat),
		},
	})
	g.Set(1)
	return g
}
