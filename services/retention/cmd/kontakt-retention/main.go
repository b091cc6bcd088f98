// Command kontakt-retention runs the retention service as its own process against
// a NATS cluster (nats.url), so it can be scaled apart from the other
// services.
package main

import (
	"os"

	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/services/retention/wire"
)

func main() {
	os.Exit(host.Main(os.Args[1:], os.Stderr, os.LookupEnv, host.Service{
		Name: "kontakt-retention", Descriptor: wire.Descriptor(), Mount: wire.Mount, Check: wire.Check,
	}))
}
