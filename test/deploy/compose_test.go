package deploy

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/kontakt-se/kontakt/pkg/seal"
)

var natsNodes = []string{"nats-1", "nats-2", "nats-3"}

func composeDir(t *testing.T) string {
	return filepath.Join(repoRoot(t), "deploy", "compose")
}

// loadCompose loads compose files from deploy/compose as `docker compose`
// would, from the project directory with its .env and none of this
// process's environment. The compose-spec schema is checked.
func loadCompose(t *testing.T, profiles []string, files ...string) *types.Project {
	t.Helper()
	dir := composeDir(t)
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(dir, f))
	}
	opts, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(dir),
		cli.WithEnv(nil),
		cli.WithEnvFiles(filepath.Join(dir, ".env")),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("%v: %v", files, err)
	}
	return p
}

func TestCompose(t *testing.T) {
	p := loadCompose(t, []string{"*"}, "compose.yaml")
	if p.Name != "kontakt" {
		t.Errorf("project name %q, want kontakt", p.Name)
	}

	t.Run("nats", func(t *testing.T) {
		for _, name := range natsNodes {
			s, ok := p.Services[name]
			if !ok {
				t.Errorf("no service %s", name)
				continue
			}
			checkNATSService(t, p, s)
		}
	})

	t.Run("kontakt", func(t *testing.T) {
		for svc, grpcService := range services {
			s, ok := p.Services[svc]
			if !ok {
				t.Errorf("no service %s", svc)
				continue
			}
			t.Run(svc, func(t *testing.T) { checkKontaktService(t, p, s, svc, grpcService) })
		}
	})

	t.Run("kurrentdb", func(t *testing.T) {
		s, ok := p.Services["kurrentdb"]
		if !ok {
			t.Fatal("no service kurrentdb (the esdb backend's node)")
		}
		checkImageRef(t, s.Image)
		if v := s.Environment["KURRENTDB_INSECURE"]; v == nil || *v != "true" {
			t.Error("kurrentdb: KURRENTDB_INSECURE is not true")
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Error("kurrentdb: no health check")
		}
		checkNamedVolume(t, p, s, "/var/lib/kurrentdb")
	})

	t.Run("every service", func(t *testing.T) {
		for name, s := range p.Services {
			checkImageRef(t, s.Image)
			if name != "token" && (s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0) {
				t.Errorf("%s: no health check", name)
			}
			for _, port := range s.Ports {
				if port.HostIP != "127.0.0.1" {
					t.Errorf("%s publishes %d on %q: the demo binds to 127.0.0.1 only", name, port.Target, port.HostIP)
				}
			}
		}
	})
}

// TestComposeESDB checks the override that keeps case events in KurrentDB.
func TestComposeESDB(t *testing.T) {
	plain := loadCompose(t, nil, "compose.yaml")
	if _, ok := plain.Services["kurrentdb"]; ok {
		t.Error("compose.yaml alone starts kurrentdb; it belongs to the esdb profile")
	}
	p := loadCompose(t, nil, "compose.yaml", "compose.esdb.yaml")
	db, ok := p.Services["kurrentdb"]
	if !ok {
		t.Fatal("with compose.esdb.yaml, kurrentdb is not started")
	}
	for svc := range services {
		s := p.Services[svc]
		env := map[string]string{}
		for k, v := range s.Environment {
			if v != nil {
				env[k] = *v
			}
		}
		cfg := loadConfig(t, imageConfig(t), env)
		if cfg.EventStore.Backend != "esdb" {
			t.Errorf("%s: event_store.backend %q, want esdb", svc, cfg.EventStore.Backend)
		}
		u, err := url.Parse(cfg.EventStore.ESDBURL)
		if err != nil || u.Scheme != "esdb" || u.Hostname() != db.Name || u.Port() != "2113" || u.Query().Get("tls") != "false" {
			t.Errorf("%s: event_store.esdb_url %q, want esdb://%s:2113?tls=false", svc, cfg.EventStore.ESDBURL, db.Name)
		}
		if dep, ok := s.DependsOn[db.Name]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: depends_on kurrentdb %+v, want service_healthy", svc, dep)
		}
		// The override adds to the base service; it must not lose it.
		if env["KONTAKT_NATS_URL"] == "" || len(s.DependsOn) != len(natsNodes)+1 {
			t.Errorf("%s: the override lost the NATS settings (%d dependencies)", svc, len(s.DependsOn))
		}
	}
}

func imageConfig(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "docker", "kontakt.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func checkImageRef(t *testing.T, image string) {
	t.Helper()
	if image == "" {
		t.Error("a service has no image")
		return
	}
	last := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(last, ":")
	if !ok || tag == "" || tag == "latest" {
		t.Errorf("image %s: pin a tag other than latest", image)
	}
}

func checkNamedVolume(t *testing.T, p *types.Project, s types.ServiceConfig, target string) {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target != target {
			continue
		}
		if v.Type != types.VolumeTypeVolume {
			t.Errorf("%s: %s is a %s, want a named volume", s.Name, target, v.Type)
		} else if _, ok := p.Volumes[v.Source]; !ok {
			t.Errorf("%s: volume %s is not declared", s.Name, v.Source)
		}
		return
	}
	t.Errorf("%s: nothing is mounted at %s", s.Name, target)
}

func checkNATSService(t *testing.T, p *types.Project, s types.ServiceConfig) {
	t.Helper()
	if !strings.HasPrefix(s.Image, "nats:2.12") {
		t.Errorf("%s: image %s, want nats:2.12", s.Name, s.Image)
	}
	checkNamedVolume(t, p, s, "/data")
	var confFile string
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && strings.HasSuffix(v.Source, ".conf") {
			confFile = v.Source
			if !v.ReadOnly {
				t.Errorf("%s: the config file is mounted read-write", s.Name)
			}
			if !slices.Contains(s.Command, v.Target) {
				t.Errorf("%s: command %v does not name the mounted config %s", s.Name, s.Command, v.Target)
			}
		}
	}
	if confFile == "" {
		t.Fatalf("%s: no config file from deploy/compose/nats is mounted", s.Name)
	}
	raw, err := os.ReadFile(confFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "sync_interval: always") {
		t.Errorf("%s: %s does not say sync_interval: always", s.Name, confFile)
	}
	// The server's own parser: unknown keys and bad values are errors.
	opts, err := natsserver.ProcessConfigFile(confFile)
	if err != nil {
		t.Fatalf("%s: nats-server refuses %s: %v", s.Name, confFile, err)
	}
	if !opts.JetStream || opts.StoreDir != "/data" {
		t.Errorf("%s: JetStream %v store_dir %q, want JetStream in the /data volume", s.Name, opts.JetStream, opts.StoreDir)
	}
	if !opts.SyncAlways {
		t.Errorf("%s: JetStream does not fsync every write", s.Name)
	}
	if opts.ServerName != s.Name {
		t.Errorf("%s: server_name %q", s.Name, opts.ServerName)
	}
	if opts.Cluster.Name == "" || opts.Cluster.Port != 6222 {
		t.Errorf("%s: cluster %q on port %d", s.Name, opts.Cluster.Name, opts.Cluster.Port)
	}
	var routes []string
	for _, r := range opts.Routes {
		routes = append(routes, r.Hostname())
	}
	if slices.Sort(routes); !slices.Equal(routes, natsNodes) {
		t.Errorf("%s: routes to %v, want %v", s.Name, routes, natsNodes)
	}
	if opts.HTTPPort != 8222 {
		t.Errorf("%s: monitoring port %d, want 8222 (the health check uses it)", s.Name, opts.HTTPPort)
	}
	if s.HealthCheck == nil || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), ":8222/healthz") {
		t.Errorf("%s: the health check should ask /healthz on 8222", s.Name)
	}
}

func checkKontaktService(t *testing.T, p *types.Project, s types.ServiceConfig, svc, grpcService string) {
	t.Helper()
	env := map[string]string{}
	var names []string
	for k, v := range s.Environment {
		if v == nil {
			t.Errorf("%s has no value", k)
			continue
		}
		env[k] = *v
		names = append(names, k)
	}
	checkEnvNames(t, names)
	for k, want := range map[string]string{
		"KONTAKT_MODE":          "development",
		"KONTAKT_LISTEN":        "0.0.0.0:8080",
		"KONTAKT_NATS_REPLICAS": "3",
	} {
		if env[k] != want {
			t.Errorf("%s=%q, want %q", k, env[k], want)
		}
	}
	var hosts []string
	for _, u := range strings.Split(env["KONTAKT_NATS_URL"], ",") {
		parsed, err := url.Parse(strings.TrimSpace(u))
		if err != nil || parsed.Scheme != "nats" || parsed.Port() != "4222" {
			t.Errorf("KONTAKT_NATS_URL: %q is not nats://host:4222", u)
			continue
		}
		hosts = append(hosts, parsed.Hostname())
	}
	if slices.Sort(hosts); !slices.Equal(hosts, natsNodes) {
		t.Errorf("KONTAKT_NATS_URL names %v, want %v", hosts, natsNodes)
	}
	// The master key is shared, decodes, and is the one from .env.
	if _, err := seal.LoadMasterKey("", func(k string) (string, bool) { v, ok := env[k]; return v, ok }, false); err != nil {
		t.Errorf("%s: %v", seal.EnvMasterKey, err)
	}
	// What the container runs with: the image's configuration file and
	// this environment, through kontakt's own loader.
	cfg := loadConfig(t, imageConfig(t), env)
	checkListen(t, "listen", cfg.Listen, apiPort)
	if cfg.DevKeyPath() == "" || !strings.HasPrefix(cfg.DevKeyPath(), "/var/lib/kontakt-dev/") {
		t.Errorf("auth.dev_key_file %q: the services must share one development signing key", cfg.DevKeyPath())
	} else {
		checkNamedVolume(t, p, s, filepath.Dir(cfg.DevKeyPath()))
	}
	if svc == "retention" {
		checkNamedVolume(t, p, s, cfg.ArchivePath())
	}
	if s.User != "65532:65532" || !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
		t.Errorf("user %q read_only %v cap_drop %v: want 65532:65532, a read-only root and no capabilities", s.User, s.ReadOnly, s.CapDrop)
	}
	tmpfsData := slices.ContainsFunc(s.Tmpfs, func(m string) bool { return strings.HasPrefix(m, cfg.DataDir+":") || m == cfg.DataDir })
	if !tmpfsData {
		t.Errorf("data_dir %s is not a tmpfs: a read-only container cannot write it", cfg.DataDir)
	}
	for _, n := range natsNodes {
		dep, ok := s.DependsOn[n]
		if !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("depends_on %s: %+v, want condition service_healthy", n, dep)
		}
	}
	hc := strings.Join(s.HealthCheck.Test, " ")
	if !strings.Contains(hc, "grpc-health-probe") || !strings.Contains(hc, "-addr=127.0.0.1:"+portOf(cfg.Listen)) || !strings.Contains(hc, "-service="+grpcService) {
		t.Errorf("health check %q should probe %s on the listen port", hc, grpcService)
	}
	if s.Build == nil || s.Build.Target != svc || filepath.Base(s.Build.Dockerfile) != "Dockerfile" {
		t.Errorf("build %+v: want deploy/docker/Dockerfile, target %s", s.Build, svc)
	} else if s.Build.Context != repoRoot(t) {
		t.Errorf("build context %s, want the repository root", s.Build.Context)
	}
	for _, port := range s.Ports {
		if port.Target != apiPort {
			t.Errorf("publishes container port %d, want %d", port.Target, apiPort)
		}
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// TestComposeWithDockerCLI lets the docker CLI itself check the file where
// it is installed (it is not on CI machines, which have no Docker).
func TestComposeWithDockerCLI(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("docker CLI not on PATH: `docker compose config -q` not run (the compose-spec loader checked the file)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, docker, "compose", "version").CombinedOutput(); err != nil {
		t.Skipf("docker compose plugin not available (%v: %s): `docker compose config -q` not run", err, strings.TrimSpace(string(out)))
	}
	for _, files := range [][]string{{"compose.yaml"}, {"compose.yaml", "compose.esdb.yaml"}} {
		args := []string{"compose"}
		for _, f := range files {
			args = append(args, "-f", filepath.Join(composeDir(t), f))
		}
		out, err := exec.CommandContext(ctx, docker, append(args, "config", "-q")...).CombinedOutput()
		if err != nil {
			t.Errorf("docker compose %v config -q: %v\n%s", files, err, out)
		}
	}
}
