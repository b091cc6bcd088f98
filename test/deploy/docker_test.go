package deploy

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// The images the Dockerfile makes: SERVICE (and --target) values.
var imageTargets = []string{"kontakt", "intake", "routing", "retention", "statistics"}

// dockerfile is the parsed deploy/docker/Dockerfile.
type dockerfile struct {
	stages  []instructions.Stage
	metaArg map[string]string // ARGs before the first FROM, with defaults
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "docker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile parser: %s", w.Short)
	}
	// BuildKit's build checks that run at parse time (casing, stage names,
	// deprecated instructions, ...): any warning fails the test.
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		t.Errorf("Dockerfile:%d: %s: %s", line, rule, msg)
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	d := dockerfile{stages: stages, metaArg: map[string]string{}}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			d.metaArg[kv.Key] = kv.ValueString()
		}
	}
	return d
}

// expand substitutes ARGs (meta ARGs overridden by args) as BuildKit does.
func (d dockerfile) expand(t *testing.T, word string, args map[string]string) string {
	t.Helper()
	env := []string{}
	for k, v := range d.metaArg {
		if o, ok := args[k]; ok {
			v = o
		}
		env = append(env, k+"="+v)
	}
	res, err := shell.NewLex('\\').ProcessWordWithMatches(word, shell.EnvsFromSlice(env))
	if err != nil {
		t.Fatalf("expand %q: %v", word, err)
	}
	return res.Result
}

func (d dockerfile) stage(name string) (instructions.Stage, bool) {
	for _, s := range d.stages {
		if strings.EqualFold(s.Name, name) {
			return s, true
		}
	}
	return instructions.Stage{}, false
}

// chain returns a stage and the stages it is built on, last first, and the
// external image at the bottom.
func (d dockerfile) chain(t *testing.T, s instructions.Stage, args map[string]string) ([]instructions.Stage, string) {
	t.Helper()
	chain := []instructions.Stage{s}
	for range 20 {
		base := d.expand(t, s.BaseName, args)
		next, ok := d.stage(base)
		if !ok {
			return chain, base
		}
		chain, s = append(chain, next), next
	}
	t.Fatalf("stage %s: FROM chain too deep", chain[0].Name)
	return nil, ""
}

// effectiveUser is the USER in force at the top of a chain: the last USER
// instruction, looking from the top stage down; none means root.
func effectiveUser(chain []instructions.Stage) string {
	for _, s := range chain {
		for i := len(s.Commands) - 1; i >= 0; i-- {
			if u, ok := s.Commands[i].(*instructions.UserCommand); ok {
				return u.User
			}
		}
	}
	return "" // root
}

// effectiveEnv is the value of an ENV key at the top of a chain.
func effectiveEnv(chain []instructions.Stage, key string) (string, bool) {
	for _, s := range chain {
		for i := len(s.Commands) - 1; i >= 0; i-- {
			if e, ok := s.Commands[i].(*instructions.EnvCommand); ok {
				for j := len(e.Env) - 1; j >= 0; j-- {
					if e.Env[j].Key == key {
						return e.Env[j].Value, true
					}
				}
			}
		}
	}
	return "", false
}

func TestDockerfile(t *testing.T) {
	d := parseDockerfile(t)
	if got := d.metaArg["SERVICE"]; got != "kontakt" {
		t.Errorf("ARG SERVICE defaults to %q, want kontakt (the single binary)", got)
	}
	for _, target := range imageTargets {
		t.Run(target, func(t *testing.T) {
			args := map[string]string{"SERVICE": target}
			// `--build-arg SERVICE=<target>` builds the last stage.
			final := d.stages[len(d.stages)-1]
			chain, base := d.chain(t, final, args)
			if !strings.EqualFold(chain[1].Name, target) {
				t.Fatalf("with SERVICE=%s the last stage is built on %q, want stage %s", target, chain[1].Name, target)
			}
			checkRuntimeChain(t, d, chain, base, target, args)
			// `--target <target>` builds the same image.
			s, ok := d.stage(target)
			if !ok {
				t.Fatalf("no stage %s", target)
			}
			if _, base2 := d.chain(t, s, args); base2 != base {
				t.Errorf("--target %s is built on %s, SERVICE=%s on %s", target, base2, target, base)
			}
		})
	}
}

func checkRuntimeChain(t *testing.T, d dockerfile, chain []instructions.Stage, base, target string, args map[string]string) {
	t.Helper()
	if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("final image is built on %s, want distroless static or scratch", base)
	}
	if strings.HasSuffix(base, ":latest") || (!strings.Contains(base, ":") && base != "scratch") {
		t.Errorf("final base %s: pin a tag", base)
	}
	user := d.expand(t, effectiveUser(chain), args)
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root user (Kubernetes runAsNonRoot can only check a number)", user)
	}
	binary := "/usr/local/bin/kontakt"
	if target != "kontakt" {
		binary += "-" + target
	}
	var entrypoint *instructions.EntrypointCommand
	var copied, healthcheck bool
	var buildStage string
	for _, s := range chain {
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.EntrypointCommand:
				if entrypoint == nil {
					entrypoint = c
				}
			case *instructions.CopyCommand:
				if c.DestPath == binary && c.From != "" {
					copied, buildStage = true, c.From
				}
			case *instructions.HealthCheckCommand:
				healthcheck = true
			case *instructions.RunCommand:
				t.Errorf("stage %s runs %v: the runtime image has no shell", s.Name, c.CmdLine)
			}
		}
	}
	if entrypoint == nil || entrypoint.PrependShell || len(entrypoint.CmdLine) == 0 || entrypoint.CmdLine[0] != binary {
		t.Errorf("ENTRYPOINT must be the exec form [%q]", binary)
	}
	if !copied {
		t.Fatalf("%s is not copied from a build stage", binary)
	}
	if !healthcheck {
		t.Error("no HEALTHCHECK")
	}
	bs, ok := d.stage(buildStage)
	if !ok {
		t.Fatalf("COPY --from=%s: no such stage", buildStage)
	}
	checkBuildChain(t, d, bs, args, filepath.Base(binary))
}

func checkBuildChain(t *testing.T, d dockerfile, s instructions.Stage, args map[string]string, binary string) {
	t.Helper()
	chain, base := d.chain(t, s, args)
	if !strings.HasPrefix(base, "golang:1.26") {
		t.Errorf("build stage %s is built on %s, want golang:1.26", s.Name, base)
	}
	var builds []string
	for _, c := range s.Commands {
		if r, ok := c.(*instructions.RunCommand); ok {
			line := strings.Join(r.CmdLine, " ")
			if strings.Contains(line, "go build") {
				builds = append(builds, line)
			}
		}
	}
	if len(builds) != 1 {
		t.Fatalf("stage %s: want one `go build`, got %q", s.Name, builds)
	}
	b := builds[0]
	if !strings.Contains(b, "-trimpath") {
		t.Errorf("stage %s: go build without -trimpath", s.Name)
	}
	if !strings.Contains(b, "/out/"+binary) {
		t.Errorf("stage %s does not build /out/%s", s.Name, binary)
	}
	cgo, ok := effectiveEnv(chain, "CGO_ENABLED")
	if !strings.Contains(b, "CGO_ENABLED=0") && (!ok || cgo != "0") {
		t.Errorf("stage %s builds with CGO_ENABLED=%q, want 0 (a static binary)", s.Name, cgo)
	}
	// The build uses the workspace: go.work is in the source stage.
	var work bool
	for _, st := range chain {
		for _, c := range st.Commands {
			if cp, ok := c.(*instructions.CopyCommand); ok && cp.From == "" && slices.Contains(cp.SourcePaths, "go.work") {
				work = true
			}
		}
	}
	if !work {
		t.Errorf("stage %s does not build in the go.work workspace", s.Name)
	}
}

// TestDockerignore walks the repository through Dockerfile.dockerignore as
// BuildKit would and checks that the context holds what the build needs and
// none of what it must not see.
func TestDockerignore(t *testing.T) {
	root := repoRoot(t)
	f, err := os.Open(filepath.Join(root, "deploy", "docker", "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(rel string) bool {
		ex, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			t.Fatal(err)
		}
		return ex
	}
	var inContext []string
	err = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if e.IsDir() {
			switch rel {
			case ".git", "bin", "data", "tools/node_modules":
				return fs.SkipDir
			}
			return nil
		}
		if !excluded(rel) {
			inContext = append(inContext, rel)
		}
		// Every source file of the modules the images build must be there.
		buildable := (strings.HasPrefix(rel, "pkg/") || strings.HasPrefix(rel, "services/")) &&
			!strings.HasSuffix(rel, "_test.go") && !strings.Contains(rel, "/testdata/")
		if buildable && excluded(rel) {
			t.Errorf("%s is left out of the build context", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// What the Dockerfile copies from the context.
	d := parseDockerfile(t)
	for _, s := range d.stages {
		for _, c := range s.Commands {
			cp, ok := c.(*instructions.CopyCommand)
			if !ok || cp.From != "" {
				continue
			}
			for _, src := range cp.SourcePaths {
				if excluded(src) && !slices.ContainsFunc(inContext, func(p string) bool { return strings.HasPrefix(p, src+"/") }) {
					t.Errorf("COPY %s: not in the build context", src)
				}
			}
		}
	}
	for _, p := range inContext {
		for _, bad := range []string{".git/", "bin/", "data/", "test/e2e/", "test/bench/", "tools/", "deploy/k8s/", "deploy/compose/", "docs/"} {
			if strings.HasPrefix(p, bad) {
				t.Errorf("%s is in the build context", p)
			}
		}
		if strings.HasSuffix(p, "_test.go") {
			t.Errorf("%s is in the build context", p)
		}
	}
	if len(inContext) == 0 {
		t.Fatal("the build context is empty")
	}
	t.Logf("build context: %d files", len(inContext))
}

func TestImageConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "docker", "kontakt.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadConfig(t, string(raw), nil)
	checkListen(t, "listen", cfg.Listen, apiPort)
	checkListen(t, "metrics_listen", cfg.MetricsListen, metricsPort)
	if cfg.DataDir != dataDir || cfg.ArchivePath() != archiveDir {
		t.Errorf("data_dir %s archive_dir %s, want %s and %s (the image's writable directories)", cfg.DataDir, cfg.ArchivePath(), dataDir, archiveDir)
	}
	// The Dockerfile makes exactly those directories writable by 65532.
	d := parseDockerfile(t)
	runtime, ok := d.stage("runtime")
	if !ok {
		t.Fatal("no stage runtime")
	}
	owned := map[string]bool{}
	for _, c := range runtime.Commands {
		if cp, ok := c.(*instructions.CopyCommand); ok && cp.Chown == "65532:65532" {
			owned[cp.DestPath] = true
		}
	}
	if !owned[dataDir] || !owned[archiveDir] {
		t.Errorf("the runtime stage makes %v writable, want %s and %s", owned, dataDir, archiveDir)
	}
}
