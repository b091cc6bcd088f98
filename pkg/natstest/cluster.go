package natstest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterProcesses is a NATS cluster of nats-server processes on loopback.
type ClusterProcesses struct {
	Nodes []*Process
}

// StartCluster starts n nats-server processes that form one JetStream
// cluster (each syncing every write), and waits until JetStream answers
// with a quorum. The processes are killed when the test ends.
func StartCluster(t testing.TB, name string, n int) *ClusterProcesses {
	t.Helper()
	host := "127.0.0.1"
	routePorts := make([]int, n)
	for i := range routePorts {
		routePorts[i] = freePort(t, host)
	}
	c := &ClusterProcesses{}
	for i := range n {
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://%s:%d", host, p))
			}
		}
		c.Nodes = append(c.Nodes, StartProcess(t, Options{
			ServerName:      fmt.Sprintf("%s-%d", name, i+1),
			Cluster:         &Cluster{Name: name, Host: host, Port: routePorts[i], Routes: routes},
			NoJetStreamWait: true,
		}))
	}
	if err := c.WaitJetStream(60 * time.Second); err != nil {
		t.Fatalf("natstest: cluster %s: %v", name, err)
	}
	return c
}

// URL lists every node's client URL, comma-separated, as clients take it.
func (c *ClusterProcesses) URL() string {
	urls := make([]string, 0, len(c.Nodes))
	for _, p := range c.Nodes {
		urls = append(urls, p.URL())
	}
	return strings.Join(urls, ",")
}

// WaitJetStream waits until JetStream can place a stream with a replica
// on every node, which needs a meta leader and every peer known to it.
func (c *ClusterProcesses) WaitJetStream(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = func() error {
			nc, err := nats.Connect(c.URL(), nats.Timeout(time.Second), nats.NoReconnect())
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// The meta leader answers before every peer has joined; a
			// stream with a replica on each node proves they all have.
			name := "NATSTEST_READY"
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"natstest.ready"}, Replicas: len(c.Nodes), Storage: jetstream.MemoryStorage}); err != nil {
				return err
			}
			return js.DeleteStream(ctx, name)
		}()
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("JetStream not ready after %s: %v", timeout, last)
}

// Node returns the process whose server name is name, or nil.
func (c *ClusterProcesses) Node(name string) *Process {
	for _, p := range c.Nodes {
		if p.opts.ServerName == name {
			return p
		}
	}
	return nil
}
