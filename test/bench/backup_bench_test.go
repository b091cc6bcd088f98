package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/natstest"
)

// backupBenchCases is how many cases the backup benchmark registers
// before it backs them up; KONTAKT_BACKUP_BENCH_CASES changes it.
func backupBenchCases(b *testing.B) int {
	if v := os.Getenv("KONTAKT_BACKUP_BENCH_CASES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("KONTAKT_BACKUP_BENCH_CASES=%q is not a positive number", v)
		}
		return n
	}
	return 2000
}

// backupStreams are the streams of the single binary, as `kontakt backup`
// copies them (the baseline copies the same).
var backupStreams = []string{"KV_KONTAKT_IDEMPOTENCY", "KONTAKT_CASES", "KONTAKT_AUDIT", "KONTAKT_CASENUMBER_BLOCKS", "KONTAKT_RETENTION_LEDGER", "KONTAKT_STATS", "KV_KONTAKT_KEYS"}

func run(b *testing.B, name string, args ...string) time.Duration {
	b.Helper()
	start := time.Now()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return time.Since(start)
}

// BenchmarkBackupRestore registers cases on a binary of its own, then
// measures `kontakt backup` while it serves against `nats stream backup`
// (the nats CLI) of the same streams in the same run, `tar` of the stopped
// data directory, and `kontakt restore` (verification, stream restore,
// journal replay and read models brought up to the log) against untarring
// the copy. Each iteration is one whole round; run with -benchtime 1x.
func BenchmarkBackupRestore(b *testing.B) {
	natsCLI := os.Getenv("KONTAKT_NATSCLI_BIN")
	if natsCLI == "" {
		b.Skip("KONTAKT_NATSCLI_BIN is not set (make bench sets it): no baseline to compare with")
	}
	cases := backupBenchCases(b)
	for b.Loop() {
		k, err := start()
		if err != nil {
			b.Fatal(err)
		}
		func() {
			defer k.stop()
			registerMany(b, k, cases)
			dir := b.TempDir()

			bk := filepath.Join(dir, "bk")
			backupTime := run(b, k.bin, "backup", "--config", k.config, "--out", bk)
			dataBytes, keyBytes := dirSize(b, bk), dirSize(b, bk+".keys")
			readModelBytes := dirSize(b, filepath.Join(bk, "readmodels"))

			seed := filepath.Join(k.dir, "data", "nats-credentials", "service.nk")
			var cliTime time.Duration
			var cliBytes uint64
			for _, s := range backupStreams {
				target := filepath.Join(dir, "nats-cli", s)
				cliTime += run(b, natsCLI, "--server", "nats://"+k.natsAddr, "--nkey", seed, "stream", "backup", s, target)
				cliBytes += dirSize(b, target)
			}

			k.stopProcess()
			tarball := filepath.Join(dir, "data.tar")
			tarTime := run(b, "tar", "-C", k.dir, "-cf", tarball, "data")
			tarInfo, err := os.Stat(tarball)
			if err != nil {
				b.Fatal(err)
			}

			restored := filepath.Join(dir, "restored")
			cfg := filepath.Join(dir, "restore.yaml")
			if err := os.WriteFile(cfg, fmt.Appendf(nil, "data_dir: %s\n", restored), 0o600); err != nil {
				b.Fatal(err)
			}
			restoreTime := run(b, k.bin, "restore", "--config", cfg, "--from", bk,
				"--journal", filepath.Join(k.dir, "data", "journal"), "--master-key-file", filepath.Join(k.dir, "data", "master.key"))
			// The same streams restored with the nats CLI into a nats-server
			// of its own (sync_interval always, as kontakt's): what a
			// JetStream restore costs without kontakt's checks, journal
			// replay and read models.
			srv := natstest.StartProcess(b, natstest.Options{})
			var cliRestoreTime time.Duration
			for _, s := range backupStreams {
				cliRestoreTime += run(b, natsCLI, "--server", srv.URL(), "stream", "restore", filepath.Join(dir, "nats-cli", s))
			}
			untar := filepath.Join(dir, "untar")
			if err := os.Mkdir(untar, 0o700); err != nil {
				b.Fatal(err)
			}
			untarTime := run(b, "tar", "-C", untar, "-xf", tarball)

			b.ReportMetric(float64(cases), "cases")
			b.ReportMetric(backupTime.Seconds(), "backup-s")
			b.ReportMetric(float64(dataBytes+keyBytes)/1e6, "backup-MB")
			b.ReportMetric(float64(readModelBytes)/1e6, "backup-readmodels-MB")
			b.ReportMetric(cliTime.Seconds(), "nats-cli-backup-s")
			b.ReportMetric(float64(cliBytes)/1e6, "nats-cli-backup-MB")
			b.ReportMetric(tarTime.Seconds(), "tar-stopped-s")
			b.ReportMetric(float64(tarInfo.Size())/1e6, "tar-MB")
			b.ReportMetric(restoreTime.Seconds(), "restore-s")
			b.ReportMetric(cliRestoreTime.Seconds(), "nats-cli-restore-s")
			b.ReportMetric(untarTime.Seconds(), "untar-s")
		}()
	}
}

// stopProcess stops the binary and keeps its data directory.
func (k *kontakt) stopProcess() {
	if k.cmd != nil && k.cmd.Process != nil {
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.done:
		case <-time.After(20 * time.Second):
			_ = k.cmd.Process.Kill()
		}
		k.cmd = nil
	}
}

// registerMany registers n questions with 8 clients at once and waits
// until the last is routed (the read models have followed).
func registerMany(b *testing.B, k *kontakt, n int) {
	b.Helper()
	agent, err := k.token("bench-anna", "agent")
	if err != nil {
		b.Fatal(err)
	}
	sup, err := k.token("bench-sara", "supervisor")
	if err != nil {
		b.Fatal(err)
	}
	conn, err := grpc.NewClient(k.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	rc := &routingClients{k: k, conns: []*grpc.ClientConn{conn}}
	var next atomic.Int64
	var last atomic.Value
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				ctx, cancel := context.WithTimeout(bearer(context.Background(), agent), 30*time.Second)
				resp, err := rc.intake(0).RegisterCase(ctx, benchQuestion(i))
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				last.Store(resp.GetCaseNumber())
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("%d registrations failed", failed.Load())
	}
	number, _ := last.Load().(string)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(bearer(context.Background(), sup), 10*time.Second)
		resp, err := rc.routing(0).FindCases(ctx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_CaseNumber{CaseNumber: number}})
		cancel()
		if err == nil && len(resp.GetCases()) == 1 && resp.GetCases()[0].GetQueue() != "" {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("case %s was not routed within 2 minutes", number)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
