// Package postfix runs Debian's Postfix (scripts/install-postfix.sh,
// `make postfix`) as an instance of its own, from a temporary directory,
// in front of kontakt's mail receiver: the real MTA the e2e tests deliver
// through and the mail benchmark measures. Its config directory, queue and
// data directory are its own; an smtpd listens on a loopback port and a
// transport sends the contact centre's domain (kommun.se) to kontakt.
package postfix

import (
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Instance is one running Postfix.
type Instance struct {
	// Dir holds config/, queue/, data/ and the maillog.
	Dir, Config string
	// SMTPD is where its smtpd listens (host:port).
	SMTPD string
}

// Available says why Postfix cannot run here (nil when it can): it is
// not installed, or this process is not root (Postfix's master must start
// as root; it drops to the postfix user itself).
func Available() error {
	if _, err := os.Stat("/usr/sbin/postfix"); err != nil {
		return errors.New("postfix is not installed: `make postfix` (scripts/install-postfix.sh) installs the pinned Debian package")
	}
	if os.Geteuid() != 0 {
		return errors.New("postfix's master must be started as root; this test runs as another user")
	}
	return nil
}

// Start configures and starts an instance whose smtpd listens on listen
// and that relays mail for kommun.se to relayTo, and waits until its
// smtpd answers. Stop it with Stop.
func Start(relayTo, listen string) (*Instance, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	// Not a private temporary directory: the postfix user must reach its
	// directories.
	dir, err := os.MkdirTemp("", "kontakt-postfix-")
	if err != nil {
		return nil, err
	}
	p := &Instance{Dir: dir, Config: filepath.Join(dir, "config"), SMTPD: listen}
	fail := func(err error) (*Instance, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(err)
	}
	for _, d := range []string{"config", "queue", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return fail(err)
		}
	}
	if out, err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		return fail(fmt.Errorf("chown: %w: %s", err, out))
	}
	host, port, err := net.SplitHostPort(relayTo)
	if err != nil {
		return fail(err)
	}
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
inet_protocols = ipv4
inet_interfaces = 127.0.0.1
myhostname = mx.kommun.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = kommun.se
transport_maps = inline:{ kommun.se=smtp:[%[2]s]:%[3]s }
default_transport = error:outside delivery is off in this test
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
message_size_limit = 10240000
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
`, dir, host, port)
	masterCF := listen + ` inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`
	if err := os.WriteFile(filepath.Join(p.Config, "main.cf"), []byte(mainCF), 0o644); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(p.Config, "master.cf"), []byte(masterCF), 0o644); err != nil {
		return fail(err)
	}
	if out, err := exec.Command("/usr/sbin/postfix", "-c", p.Config, "start").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("postfix start: %w: %s\n%s", err, out, p.Log()))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := smtp.Dial(p.SMTPD)
		if err == nil {
			_ = c.Quit()
			return p, nil
		}
		if time.Now().After(deadline) {
			log := p.Log()
			p.Stop()
			return nil, fmt.Errorf("postfix's smtpd never answered: %w\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log returns the instance's maillog.
func (p *Instance) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "maillog"))
	return string(b)
}

// Stop stops the instance and removes its directory.
func (p *Instance) Stop() {
	_ = exec.Command("/usr/sbin/postfix", "-c", p.Config, "stop").Run()
	_ = os.RemoveAll(p.Dir)
}
