package e2e

// Every documented example runs (issue 16, part 4). The shell examples
// of README.md and docs/api.md are the script: each fenced block whose
// info string is `sh run` is run, in the order the files are read and in
// one shell, against a started `kontakt serve`, so a variable set by one
// example (a token, $ID from an earlier answer) is there for the next.
// A block that cannot run here says `sh norun` (a second terminal, a
// production host, a stopped server); a shell block that says neither
// fails the test, so an example is never added without deciding. The
// docs are the only copy: nothing is rewritten but the server's address.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// docFiles are the documents whose examples run, in this order.
var docFiles = []string{"README.md", "docs/api.md"}

// docAddr is the address the examples are written against; the runner
// puts the started server's address in its place.
const docAddr = "127.0.0.1:8080"

// docBlock is one fenced shell block of a document.
type docBlock struct {
	file string
	line int // of the opening fence
	run  bool
	text string
}

// shellLanguages are the info-string languages a shell example is
// written in.
var shellLanguages = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true}

// docBlocks returns the fenced shell blocks of file (relative to the
// repository), each with its run or norun marker; a shell block without
// one is an error naming its line.
func docBlocks(t *testing.T, root, file string) []docBlock {
	t.Helper()
	f, err := os.Open(filepath.Join(root, file))
	require.NoError(t, err)
	defer f.Close()
	var out []docBlock
	var cur *docBlock
	var unmarked []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if cur != nil {
			if strings.HasPrefix(line, "```") {
				if cur.file != "" {
					out = append(out, *cur)
				}
				cur = nil
				continue
			}
			cur.text += line + "\n"
			continue
		}
		info, ok := strings.CutPrefix(line, "```")
		if !ok {
			continue
		}
		cur = &docBlock{}
		words := strings.Fields(info)
		if len(words) == 0 || !shellLanguages[words[0]] {
			continue // another language: read past it
		}
		*cur = docBlock{file: file, line: n}
		switch {
		case len(words) == 2 && words[1] == "run":
			cur.run = true
		case len(words) == 2 && words[1] == "norun":
		default:
			unmarked = append(unmarked, fmt.Sprintf("%s:%d", file, n))
		}
	}
	require.NoError(t, sc.Err())
	require.Nil(t, cur, "%s ends inside a fenced block", file)
	require.Empty(t, unmarked, "shell examples must say `sh run` (the docs test runs it) or `sh norun` (it cannot run against a test server)")
	return out
}

// TestDocumentedShellBlocksAreMarked fails fast, without a server, when
// a shell example says neither `sh run` nor `sh norun`.
func TestDocumentedShellBlocksAreMarked(t *testing.T) {
	root := repoRoot(t)
	for _, f := range docFiles {
		blocks := docBlocks(t, root, f)
		require.NotEmpty(t, blocks, "%s has shell examples", f)
	}
}

func TestDocumentedExamplesRun(t *testing.T) {
	root := repoRoot(t)
	var blocks []docBlock
	for _, f := range docFiles {
		blocks = append(blocks, docBlocks(t, root, f)...)
	}

	// The examples run where `make run` would: bin/ holds the binary and
	// the clients, ./data is the server's data directory (the dev signing
	// key `bin/kontakt token` reads), and 127.0.0.1:8080 is the server.
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	require.NoError(t, os.Mkdir(binDir, 0o755))
	for _, name := range []string{"kontakt", "grpcurl", "jq"} {
		require.NoError(t, os.Symlink(binary(t, name), filepath.Join(binDir, name)))
	}
	k := Start(t, Options{DataDir: filepath.Join(dir, "data")})

	var script strings.Builder
	// -e: an example that fails stops the run; curl's --fail-with-body
	// makes an HTTP error a failure too (the examples use -s, which alone
	// would hide a 403).
	script.WriteString("set -euo pipefail\n")
	script.WriteString("curl() { command curl --fail-with-body --show-error \"$@\"; echo; }\n")
	ran, skipped := 0, 0
	for _, b := range blocks {
		if !b.run {
			skipped++
			continue
		}
		ran++
		fmt.Fprintf(&script, "echo %q >&2\n", fmt.Sprintf("### %s:%d", b.file, b.line))
		script.WriteString(strings.ReplaceAll(b.text, docAddr, k.Addr))
	}
	script.WriteString("echo '### all examples ran' >&2\n")
	require.Positive(t, ran)
	t.Logf("running %d examples, %d marked norun", ran, skipped)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	// A command left running (a stream that follows) is killed with the
	// shell at the deadline; its output pipe is not waited for longer.
	cmd.WaitDelay = 5 * time.Second
	// The CLI commands that call a server find it by the configuration's
	// listen address.
	cmd.Env = append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"), "KONTAKT_LISTEN="+k.Addr)
	out, err := cmd.CombinedOutput()
	last := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "### ") {
			last = strings.TrimPrefix(l, "### ")
		}
	}
	if testing.Verbose() {
		t.Logf("output of the examples:\n%s", out)
	}
	require.NoError(t, err, "the example at %s failed; output:\n%s", last, out)
	require.Equal(t, "all examples ran", last, "output:\n%s", out)
}
