// Package deploy checks the deployment files in deploy/ offline: the
// Kubernetes manifests are built with kustomize and decoded strictly into
// the Kubernetes API types, the compose file is loaded with the compose-spec
// loader, the Dockerfile is parsed with BuildKit's parser, and every
// kontakt configuration they carry is loaded with kontakt's own
// configuration loader. Nothing here needs a network, Docker or a cluster.
package deploy

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// The four services and the gRPC service each one serves.
var services = map[string]string{
	"intake":     "kontakt.intake.v1.IntakeService",
	"routing":    "kontakt.routing.v1.RoutingService",
	"retention":  "kontakt.retention.v1.RetentionService",
	"statistics": "kontakt.statistics.v1.StatisticsService",
}

const (
	apiPort     = 8080
	metricsPort = 8081
	dataDir     = "/var/lib/kontakt"
	archiveDir  = "/var/lib/kontakt-archive"
)

// repoRoot is the repository root: this package lives in test/deploy.
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root %s has no go.work: %v", root, err)
	}
	return root
}

// ---- Kubernetes --------------------------------------------------------

// newTyped returns an empty object of the Kubernetes type for an
// apiVersion and kind. A kind that is not listed is an error: the
// manifests use only these.
func newTyped(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, true
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "v1 PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, true
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	}
	return nil, false
}

// decodeStrict decodes one object the way the API server does: JSON field
// names are case-sensitive, and unknown or duplicate fields are errors.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(doc, &tm); err != nil {
		return nil, err
	}
	obj, ok := newTyped(tm.APIVersion, tm.Kind)
	if !ok {
		return nil, fmt.Errorf("apiVersion %q kind %q is not a kind these manifests may use", tm.APIVersion, tm.Kind)
	}
	strict, err := sigsjson.UnmarshalStrict(doc, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, errors.Join(strict...)
	}
	return obj, nil
}

// manifests is the typed output of one kustomization.
type manifests struct {
	dir             string
	all             []any
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	pdbs            []*policyv1.PodDisruptionBudget
	networkPolicies []*networkingv1.NetworkPolicy
	pvcs            []*corev1.PersistentVolumeClaim
	namespaces      []*corev1.Namespace
}

func buildKustomization(t *testing.T, dir string) manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := manifests{dir: dir}
	for _, r := range resMap.Resources() {
		doc, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Errorf("%s/%s: %v", r.GetKind(), r.GetName(), err)
			continue
		}
		m.all = append(m.all, obj)
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments = append(m.deployments, o)
		case *corev1.Service:
			m.services = append(m.services, o)
		case *corev1.ConfigMap:
			m.configMaps = append(m.configMaps, o)
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *networkingv1.NetworkPolicy:
			m.networkPolicies = append(m.networkPolicies, o)
		case *corev1.PersistentVolumeClaim:
			m.pvcs = append(m.pvcs, o)
		case *corev1.Namespace:
			m.namespaces = append(m.namespaces, o)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

// kustomizations lists every directory under deploy/k8s with a
// kustomization file.
func kustomizations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	base := filepath.Join(repoRoot(t), "deploy", "k8s")
	err := filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch d.Name() {
		case "kustomization.yaml", "kustomization.yml", "Kustomization":
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 2 {
		t.Fatalf("want the base and at least one overlay under %s, found %v", base, dirs)
	}
	return dirs
}

func TestStrictDecodingRejectsMistakes(t *testing.T) {
	good := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"replicas":2}}`
	if _, err := decodeStrict([]byte(good)); err != nil {
		t.Fatalf("a valid Deployment was refused: %v", err)
	}
	for name, doc := range map[string]string{
		"misspelt field":  `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"replicass":2}}`,
		"wrong case":      `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"Replicas":2}}`,
		"duplicate field": `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"replicas":2,"replicas":3}}`,
		"wrong type":      `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"replicas":"two"}}`,
		"unknown kind":    `{"apiVersion":"apps/v1","kind":"Deploiment","metadata":{"name":"x"}}`,
		"port typo":       `{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"},"spec":{"ports":[{"port":8080,"targetPrt":"api"}]}}`,
	} {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
}

func TestKubernetesManifests(t *testing.T) {
	root := repoRoot(t)
	for _, dir := range kustomizations(t) {
		rel, _ := filepath.Rel(root, dir)
		t.Run(filepath.ToSlash(rel), func(t *testing.T) {
			m := buildKustomization(t, dir)
			production := strings.Contains(filepath.ToSlash(rel), "overlays/production")
			checkObjects(t, m)
			checkDeployments(t, m, production)
			checkNetworkPolicies(t, m)
		})
	}
}

func checkObjects(t *testing.T, m manifests) {
	for _, obj := range m.all {
		meta := reflect.ValueOf(obj).Elem().FieldByName("ObjectMeta").Interface().(metav1.ObjectMeta)
		_, isNamespace := obj.(*corev1.Namespace)
		if !isNamespace && meta.Namespace != "kontakt" {
			t.Errorf("%T %s is in namespace %q, want kontakt", obj, meta.Name, meta.Namespace)
		}
	}
	if len(m.namespaces) != 1 || m.namespaces[0].Name != "kontakt" {
		t.Errorf("want exactly the namespace kontakt, got %d namespaces", len(m.namespaces))
	} else if got := m.namespaces[0].Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace kontakt enforces pod security %q, want restricted", got)
	}
	if len(m.deployments) != len(services) {
		t.Errorf("want %d Deployments (one per service), got %d", len(services), len(m.deployments))
	}
}

func checkDeployments(t *testing.T, m manifests, production bool) {
	seen := map[string]bool{}
	for _, d := range m.deployments {
		t.Run(d.Name, func(t *testing.T) {
			svc, ok := strings.CutPrefix(d.Name, "kontakt-")
			grpcService, known := services[svc]
			if !ok || !known {
				t.Fatalf("Deployment %s is not kontakt-<service>", d.Name)
			}
			seen[svc] = true
			if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
				t.Errorf("replicas %v, want at least 2", d.Spec.Replicas)
			}
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil || sel.Empty() {
				t.Fatalf("selector %v: %v", d.Spec.Selector, err)
			}
			podLabels := labels.Set(d.Spec.Template.Labels)
			if !sel.Matches(podLabels) {
				t.Errorf("selector %s does not match the pod labels %v", sel, podLabels)
			}
			checkPodSpec(t, &d.Spec.Template.Spec, grpcService, production)
			checkServiceFor(t, m, d, podLabels)
			checkPDBFor(t, m, podLabels)
			checkConfigFor(t, m, d, svc, production)
		})
	}
	for svc := range services {
		if !seen[svc] {
			t.Errorf("no Deployment kontakt-%s", svc)
		}
	}
}

func checkPodSpec(t *testing.T, spec *corev1.PodSpec, grpcService string, production bool) {
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken must be false: kontakt never calls the Kubernetes API")
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a hostPath", v.Name)
		}
	}
	podSC := spec.SecurityContext
	if podSC == nil {
		podSC = &corev1.PodSecurityContext{}
	}
	containers := append(slices.Clone(spec.InitContainers), spec.Containers...)
	if len(spec.Containers) != 1 {
		t.Errorf("want one container, got %d", len(spec.Containers))
	}
	for _, c := range containers {
		t.Run(c.Name, func(t *testing.T) {
			checkImage(t, c.Image, production)
			req := c.Resources.Requests
			if req.Cpu().IsZero() || req.Memory().IsZero() {
				t.Errorf("resources.requests must set cpu and memory, got %v", req)
			}
			if c.Resources.Limits.Memory().IsZero() {
				t.Error("resources.limits.memory is not set")
			}
			// The HTTP probes on the metrics port: /readyz checks NATS and
			// the read models, /healthz only the process.
			for name, want := range map[string]string{"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
				p := map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe}[name]
				switch {
				case p == nil:
					t.Errorf("%s is missing", name)
				case p.HTTPGet == nil:
					t.Errorf("%s must be an HTTP probe of %s on the metrics port", name, want)
				case p.HTTPGet.Port.IntValue() != metricsPort || p.HTTPGet.Path != want:
					t.Errorf("%s probes %s on port %s, want %s on %d", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), want, metricsPort)
				}
			}
			sc := c.SecurityContext
			if sc == nil {
				sc = &corev1.SecurityContext{}
			}
			if !isTrue(sc.RunAsNonRoot) && !isTrue(podSC.RunAsNonRoot) {
				t.Error("runAsNonRoot is not true")
			}
			if uid := cmpOr(sc.RunAsUser, podSC.RunAsUser); uid != nil && *uid == 0 {
				t.Error("runAsUser is 0")
			}
			if !isTrue(sc.ReadOnlyRootFilesystem) {
				t.Error("readOnlyRootFilesystem is not true")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Error("allowPrivilegeEscalation is not false")
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Error("privileged")
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("capabilities must drop ALL and add none, got %+v", sc.Capabilities)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = podSC.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("seccompProfile must be RuntimeDefault, got %+v", seccomp)
			}
			for _, e := range c.Env {
				if e.Name == seal.EnvMasterKey && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("%s must come from a Secret (secretKeyRef), not a literal", seal.EnvMasterKey)
				}
			}
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == seal.EnvMasterKey }) {
				t.Errorf("%s is not set", seal.EnvMasterKey)
			}
			checkEnvNames(t, envNames(c))
		})
	}
}

func checkImage(t *testing.T, image string, production bool) {
	t.Helper()
	name, digest, hasDigest := strings.Cut(image, "@")
	tag := ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	switch {
	case hasDigest && !strings.HasPrefix(digest, "sha256:"):
		t.Errorf("image %s: digest is not sha256", image)
	case !hasDigest && tag == "":
		t.Errorf("image %s has no tag (that is :latest)", image)
	case tag == "latest":
		t.Errorf("image %s uses :latest", image)
	}
	if production {
		if registry, _, ok := strings.Cut(name, "/"); !ok || !strings.ContainsAny(registry, ".:") {
			t.Errorf("production image %s names no registry", image)
		}
		if tag == "dev" {
			t.Errorf("production image %s is a development build", image)
		}
	}
}

func checkServiceFor(t *testing.T, m manifests, d *appsv1.Deployment, podLabels labels.Set) {
	t.Helper()
	ports := map[string]int32{}
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["api"] != apiPort || ports["metrics"] != metricsPort {
		t.Errorf("container ports %v, want api=%d and metrics=%d", ports, apiPort, metricsPort)
	}
	for _, s := range m.services {
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			continue
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			switch {
			case target.Type == intstr.String && ports[target.StrVal] == 0:
				t.Errorf("Service %s port %s targets %q, which the pod does not name", s.Name, p.Name, target.StrVal)
			case target.Type == intstr.Int && !slices.Contains(slices.Collect(maps.Values(ports)), target.IntVal):
				t.Errorf("Service %s port %s targets %d, which the pod does not expose", s.Name, p.Name, target.IntVal)
			}
		}
		return
	}
	t.Errorf("no Service selects the pods of %s", d.Name)
}

func checkPDBFor(t *testing.T, m manifests, podLabels labels.Set) {
	t.Helper()
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(podLabels) {
			if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
				t.Errorf("PodDisruptionBudget %s sets neither minAvailable nor maxUnavailable", p.Name)
			}
			return
		}
	}
	t.Error("no PodDisruptionBudget selects the pods")
}

// checkConfigFor loads the kontakt configuration a pod would see (the
// ConfigMap's file and the container's environment) with kontakt's own
// loader, and checks it against the pod: ports, probes, volumes.
func checkConfigFor(t *testing.T, m manifests, d *appsv1.Deployment, svc string, production bool) {
	t.Helper()
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil && e.Name == seal.EnvMasterKey:
			env[e.Name] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" // stands in for the Secret
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.SecretRef != nil && ef.SecretRef.Name == "kontakt-oidc" {
			// What the Secret kontakt-oidc is documented to hold.
			env["KONTAKT_AUTH_OIDC_ISSUER"] = "https://idp.example.se"
			env["KONTAKT_AUTH_OIDC_AUDIENCE"] = "kontakt"
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	cfgPath := env["KONTAKT_CONFIG"]
	if cfgPath == "" {
		t.Fatal("KONTAKT_CONFIG is not set")
	}
	vm, ok := mounts[filepath.Dir(cfgPath)]
	if !ok || volumes[vm.Name].ConfigMap == nil {
		t.Fatalf("KONTAKT_CONFIG=%s is not in a mounted ConfigMap", cfgPath)
	}
	cmName := volumes[vm.Name].ConfigMap.Name
	var file string
	for _, cm := range m.configMaps {
		if cm.Name == cmName {
			file, ok = cm.Data[filepath.Base(cfgPath)]
			if !ok {
				t.Fatalf("ConfigMap %s has no key %s", cmName, filepath.Base(cfgPath))
			}
		}
	}
	if file == "" {
		t.Fatalf("ConfigMap %s (mounted at %s) is not in the build", cmName, vm.MountPath)
	}
	cfg := loadConfig(t, file, env)
	wantMode := config.Development
	if production {
		wantMode = config.Production
	}
	if cfg.Mode != wantMode {
		t.Errorf("mode %s, want %s", cfg.Mode, wantMode)
	}
	checkListen(t, "listen", cfg.Listen, apiPort)
	checkListen(t, "metrics_listen", cfg.MetricsListen, metricsPort)
	if cfg.NATS.URL == "" || cfg.NATS.Replicas != 3 {
		t.Errorf("nats.url %q replicas %d: want the external cluster with 3 replicas", cfg.NATS.URL, cfg.NATS.Replicas)
	}
	dm, ok := mounts[cfg.DataDir]
	if !ok || (volumes[dm.Name].EmptyDir == nil && volumes[dm.Name].PersistentVolumeClaim == nil) {
		t.Errorf("data_dir %s is not an emptyDir or PVC mount", cfg.DataDir)
	} else if dm.ReadOnly {
		t.Errorf("data_dir %s is mounted read-only", cfg.DataDir)
	}
	if svc == "retention" {
		am, ok := mounts[cfg.ArchivePath()]
		if !ok || volumes[am.Name].PersistentVolumeClaim == nil {
			t.Errorf("retention.archive_dir %s must be a PersistentVolumeClaim: archive packages are not in the log", cfg.ArchivePath())
		} else {
			claim := volumes[am.Name].PersistentVolumeClaim.ClaimName
			found := false
			for _, pvc := range m.pvcs {
				if pvc.Name == claim {
					found = true
					if d.Spec.Replicas != nil && *d.Spec.Replicas > 1 && !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
						t.Errorf("PVC %s is shared by %d retention pods but is not ReadWriteMany", claim, *d.Spec.Replicas)
					}
				}
			}
			if !found {
				t.Errorf("PVC %s is not in the build", claim)
			}
		}
		// The shred journal: required in production, and kept on a
		// volume of its own that outlives the pod (one directory per pod,
		// named by the pod through $(POD_NAME)).
		dir, inside, err := cfg.JournalPath()
		if err != nil {
			t.Errorf("kontakt-retention would refuse to start: %v", err)
		} else if jm, ok := mounts[filepath.Dir(dir)]; inside || !ok || volumes[jm.Name].PersistentVolumeClaim == nil {
			t.Errorf("retention.journal_dir %s must be on a PersistentVolumeClaim of its own, not in data_dir", dir)
		}
	}
}

func checkListen(t *testing.T, key, addr string, port int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil || p != fmt.Sprint(port) || (host != "0.0.0.0" && host != "" && host != "::") {
		t.Errorf("%s %q: want all interfaces on port %d", key, addr, port)
	}
}

// loadConfig runs kontakt's configuration loader on a file's content and
// an environment, as a process would at start-up.
func loadConfig(t *testing.T, content string, env map[string]string) config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kontakt.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("kontakt would refuse to start: %v", err)
	}
	return cfg
}

func envNames(c corev1.Container) []string {
	var names []string
	for _, e := range c.Env {
		names = append(names, e.Name)
	}
	return names
}

// knownEnv is every KONTAKT_* variable kontakt reads: one per settable
// configuration key (the rule of pkg/config), the master key, and the
// configuration file.
// knownEnv is every KONTAKT_* variable kontakt reads (pkg/config's list).
func knownEnv() map[string]bool {
	known := map[string]bool{}
	for _, n := range config.EnvNames() {
		known[n] = true
	}
	return known
}

// checkEnvNames catches a misspelt variable, which kontakt would ignore.
func checkEnvNames(t *testing.T, names []string) {
	t.Helper()
	known := knownEnv()
	for _, n := range names {
		if strings.HasPrefix(n, "KONTAKT_") && !known[n] {
			t.Errorf("%s is not a variable kontakt reads (a misspelt configuration key?)", n)
		}
	}
}

func TestKnownEnvFollowsTheConfigRule(t *testing.T) {
	known := knownEnv()
	for _, n := range []string{"KONTAKT_NATS_URL", "KONTAKT_NATS_REPLICAS", "KONTAKT_LISTEN", "KONTAKT_AUTH_OIDC_ISSUER", "KONTAKT_RETENTION_ARCHIVE_DIR", "KONTAKT_CORS_ALLOWED_ORIGINS"} {
		if !known[n] {
			t.Errorf("%s should be known", n)
		}
	}
	for _, n := range []string{"KONTAKT_NATS_REPLICA", "KONTAKT_ROUTING_QUEUES"} {
		if known[n] {
			t.Errorf("%s should not be known", n)
		}
	}
	// The rule matches pkg/config: a known variable is applied.
	cfg, err := config.Load("", func(k string) (string, bool) {
		if k == "KONTAKT_NATS_URL" {
			return "nats://a:4222", true
		}
		return "", false
	})
	if err != nil || cfg.NATS.URL != "nats://a:4222" {
		t.Fatalf("KONTAKT_NATS_URL was not applied: %v %q", err, cfg.NATS.URL)
	}
}

func checkNetworkPolicies(t *testing.T, m manifests) {
	if len(m.networkPolicies) == 0 {
		t.Fatal("no NetworkPolicy")
	}
	var defaultDeny bool
	allowedIn := map[int32]bool{}
	allowedOut := map[int32]bool{}
	kontakt := labels.Set(m.deployments[0].Spec.Template.Labels)
	for _, np := range m.networkPolicies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatalf("NetworkPolicy %s: %v", np.Name, err)
		}
		types := np.Spec.PolicyTypes
		if sel.Empty() && len(np.Spec.Ingress) == 0 && len(np.Spec.Egress) == 0 &&
			slices.Contains(types, networkingv1.PolicyTypeIngress) && slices.Contains(types, networkingv1.PolicyTypeEgress) {
			defaultDeny = true
			continue
		}
		if !sel.Matches(kontakt) {
			continue
		}
		for _, rule := range np.Spec.Ingress {
			if len(rule.From) == 0 || len(rule.Ports) == 0 {
				t.Errorf("NetworkPolicy %s admits ingress from anywhere or on any port", np.Name)
			}
			for _, peer := range rule.From {
				if peer.NamespaceSelector == nil || len(peer.NamespaceSelector.MatchLabels)+len(peer.NamespaceSelector.MatchExpressions) == 0 {
					t.Errorf("NetworkPolicy %s admits ingress not limited to a labelled namespace", np.Name)
				}
			}
			for _, p := range rule.Ports {
				if p.Port != nil {
					allowedIn[p.Port.IntVal] = true
				}
			}
		}
		for _, rule := range np.Spec.Egress {
			if len(rule.Ports) == 0 {
				t.Errorf("NetworkPolicy %s admits egress on any port", np.Name)
			}
			for _, p := range rule.Ports {
				if p.Port != nil {
					allowedOut[p.Port.IntVal] = true
				}
			}
		}
	}
	if !defaultDeny {
		t.Error("no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)")
	}
	if !allowedIn[apiPort] || !allowedIn[metricsPort] {
		t.Errorf("ingress allowed on %v: want %d (ingress controller) and %d (monitoring)", slices.Sorted(maps.Keys(allowedIn)), apiPort, metricsPort)
	}
	for p := range allowedIn {
		if p != apiPort && p != metricsPort {
			t.Errorf("ingress allowed on port %d", p)
		}
	}
	if !allowedOut[4222] || !allowedOut[53] {
		t.Errorf("egress allowed on %v: want 4222 (NATS) and 53 (DNS)", slices.Sorted(maps.Keys(allowedOut)))
	}
}

func TestNATSHelmValues(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "k8s", "nats", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Config struct {
			Cluster struct {
				Enabled  bool `json:"enabled"`
				Replicas int  `json:"replicas"`
			} `json:"cluster"`
			JetStream struct {
				Enabled bool           `json:"enabled"`
				Merge   map[string]any `json:"merge"`
			} `json:"jetstream"`
		} `json:"config"`
	}
	if err := sigsyaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if !v.Config.Cluster.Enabled || v.Config.Cluster.Replicas != 3 {
		t.Errorf("NATS cluster: enabled %v replicas %d, want a 3-node cluster", v.Config.Cluster.Enabled, v.Config.Cluster.Replicas)
	}
	if !v.Config.JetStream.Enabled || v.Config.JetStream.Merge["sync_interval"] != "always" {
		t.Errorf("NATS JetStream: enabled %v, merge %v: want sync_interval: always", v.Config.JetStream.Enabled, v.Config.JetStream.Merge)
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

func cmpOr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}
