// Command kontakt is the single binary: `kontakt serve` runs the four
// services with an embedded NATS server, and the other subcommands are the
// admin CLI.
package main

import (
	"os"

	"github.com/kontakt-se/kontakt/services/kontakt/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}
