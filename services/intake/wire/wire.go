// Package wire mounts the intake service on a process (pkg/host): the
// single binary and intake's own binary build it the same way.
package wire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"strings"

	gomail "github.com/emersion/go-message/mail"

	"google.golang.org/protobuf/reflect/protoreflect"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/blobstore"
	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/ratelimit"
	"github.com/kontakt-se/kontakt/services/intake/adapters/casenumber"
	"github.com/kontakt-se/kontakt/services/intake/adapters/idempotency"
	"github.com/kontakt-se/kontakt/services/intake/adapters/outbox"
	"github.com/kontakt-se/kontakt/services/intake/adapters/smtprelay"
	"github.com/kontakt-se/kontakt/services/intake/app"
	"github.com/kontakt-se/kontakt/services/intake/domain"
	"github.com/kontakt-se/kontakt/services/intake/ports"
	"github.com/kontakt-se/kontakt/services/intake/ports/mailin"
)

// Open311Prefix is where the GeoReport v2 endpoints live; a host that
// mounts intake declares it in host.Options.HTTPPrefixes.
const Open311Prefix = "/open311/v2"

// Descriptor is the gRPC service intake serves.
func Descriptor() protoreflect.ServiceDescriptor {
	return intakev1.File_kontakt_intake_v1_intake_proto.Services().Get(0)
}

// Mount builds intake on h: case numbers, idempotency records, the
// application service, its gRPC handlers and the Open311 routes.
func Mount(ctx context.Context, h *host.Host) error {
	cfg := h.Config
	numbers, err := casenumber.New(ctx, h.JS, casenumber.Config{Replicas: cfg.NATS.Replicas})
	if err != nil {
		return fmt.Errorf("case numbers: %w", err)
	}
	idem, err := idempotency.New(ctx, h.JS, idempotency.Config{Replicas: cfg.NATS.Replicas})
	if err != nil {
		return fmt.Errorf("idempotency records: %w", err)
	}
	payloadKey, err := h.Master.DeriveKey("kontakt/intake/idempotency-payload")
	if err != nil {
		return err
	}
	logger := h.Logger.With("service", "intake")
	categories := make([]domain.Category, 0, len(cfg.Categories))
	for _, c := range cfg.Categories {
		categories = append(categories, domain.Category{Code: c.Code, Types: c.CaseTypes()})
	}
	mailboxes := make(map[string]app.Mailbox, len(cfg.Mail.Inbound.Addresses))
	for _, a := range cfg.Mail.Inbound.Addresses {
		mailboxes[a.Normalised()] = app.Mailbox{Type: a.CaseType(), Category: a.Category}
	}
	blobs, err := blobstore.Open(ctx, h.JS, h.Sealer, blobstore.Config{Replicas: cfg.NATS.Replicas})
	if err != nil {
		return fmt.Errorf("attachment store: %w", err)
	}
	// The outbox's file also indexes the Message-IDs kontakt sent, which
	// replies and bounces name; without sending there is none.
	var sentMail *outbox.Store
	if cfg.Mail.Outbound.Host != "" && !h.Offline() {
		dir, err := h.DataPath("mail")
		if err != nil {
			return err
		}
		if sentMail, err = outbox.Open(filepath.Join(dir, "outbox.db")); err != nil {
			return err
		}
		h.OnClose(sentMail.Close)
	}
	appCfg := app.Config{
		PayloadKey:        payloadKey,
		Categories:        domain.NewCategories(categories),
		Mailboxes:         mailboxes,
		ReplyReopenWithin: cfg.Mail.Inbound.ReplyReopenWithin,
		Attachments:       blobs,
	}
	if sentMail != nil {
		appCfg.SentMail = sentMail
	}
	svc, err := app.NewService(h.Store, h.Sealer, numbers, idem, h.Clock, logger, appCfg)
	if err != nil {
		return err
	}
	if !h.Offline() {
		// Content whose case never got appended (a crash between the
		// two) is deleted after app.OrphanGrace.
		h.Go(func(ctx context.Context) error { return svc.RunOrphanSweep(ctx, app.OrphanGrace/4) })
	}
	submissions, err := ports.NewSubmissionMetrics(h.Server.Metrics())
	if err != nil {
		return fmt.Errorf("intake: submission metrics: %w", err)
	}
	if in := cfg.Mail.Inbound; in.Listen != "" && !h.Offline() {
		mcfg := mailin.Config{
			Listen: in.Listen, LMTP: in.LMTP, Hostname: in.Hostname,
			MaxMessageBytes: int64(in.MaxMessageBytes),
			PerSender:       ratelimit.Limit{PerMinute: in.PerSender.PerMinute, Burst: in.PerSender.Burst},
			Observe:         submissions.ObserveMail,
		}
		if in.StartTLS {
			mcfg.TLS = h.Server.TLSConfig()
		}
		receiver, err := mailin.New(mcfg, svc, logger.With("edge", "mail"))
		if err != nil {
			return err
		}
		h.Go(receiver.Run)
	}
	if sentMail != nil {
		if err := mountOutbox(h, logger, sentMail); err != nil {
			return err
		}
	}
	// Registrations that arrive together share their disk syncs.
	h.Go(svc.RunGroupCommit)
	ports.Register(h.Server, ports.NewServer(svc, h.Validator, h.Clock, logger), submissions)
	services := make([]ports.Open311Service, 0, len(cfg.Intake.Open311Services))
	for _, s := range cfg.Intake.Open311Services {
		// Every service is a category (checked at start-up); its title
		// is the name unless the service has one of its own.
		name := s.Name
		if cat, ok := cfg.Category(s.Code); ok && name == "" {
			name = cat.Title
		}
		services = append(services, ports.Open311Service{Code: s.Code, Name: name, Description: s.Description, Group: s.Group})
	}
	// The public list of service requests is a read model in memory,
	// rebuilt from the log at each start: fault reports only, a few
	// hundred bytes each.
	public := app.NewPublicRequests()
	runner, err := projection.New(projection.Config{Name: "open311", Store: h.Store, Model: public, Head: h.Store.Head, Logger: logger})
	if err != nil {
		return err
	}
	for _, c := range runner.Collectors() {
		if err := h.Server.Metrics().Register(c); err != nil {
			return fmt.Errorf("open311 metrics: %w", err)
		}
	}
	h.Go(runner.Run)
	return h.Mount(Open311Prefix, ports.NewOpen311(Open311Prefix, svc, h.Validator, h.Verifier, h.Submissions, services, h.Clock, logger,
		ports.Open311Options{Public: public, PublishFreeText: cfg.Intake.Open311PublishFreeText, Submissions: submissions}))
}

// mountOutbox starts the mail outbox (mail.outbound): a projection of
// the log into a bbolt file of pending mails, and the sender that
// delivers them through the relay. Never in an offline process (backup,
// restore), which runs the background workers too.
func mountOutbox(h *host.Host, logger *slog.Logger, items *outbox.Store) error {
	out := h.Config.Mail.Outbound
	from, err := mail.ParseAddress(out.From)
	if err != nil {
		return fmt.Errorf("mail.outbound.from: %w", err)
	}
	var tc tls.Config
	if out.CAFile != "" {
		pem, err := os.ReadFile(out.CAFile)
		if err != nil {
			return fmt.Errorf("mail.outbound.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("mail.outbound.ca_file: %s holds no PEM certificate", out.CAFile)
		}
	}
	password := ""
	if v, ok := h.LookupEnv("KONTAKT_MAIL_OUTBOUND_PASSWORD"); ok {
		password = v
	} else if out.PasswordFile != "" {
		b, err := os.ReadFile(out.PasswordFile)
		if err != nil {
			return fmt.Errorf("mail.outbound.password_file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	relay, err := smtprelay.New(smtprelay.Config{
		Host: out.Host, Port: out.RelayPort(), Security: out.Security, TLS: &tc,
		Username: out.Username, Password: password, From: &gomail.Address{Name: from.Name, Address: from.Address}, Clock: h.Clock,
	})
	if err != nil {
		return err
	}
	custom := map[casev1.CaseType]domain.MailTemplate{}
	for _, t := range []casev1.CaseType{casev1.CaseType_CASE_TYPE_FRAGA, casev1.CaseType_CASE_TYPE_FELANMALAN, casev1.CaseType_CASE_TYPE_SYNPUNKT, casev1.CaseType_CASE_TYPE_BREV} {
		c := out.Acknowledgements.ForType(t)
		custom[t] = domain.MailTemplate{Subject: c.Subject, Body: c.Body}
	}
	acks, err := domain.NewAcknowledgements(custom)
	if err != nil {
		return fmt.Errorf("mail.outbound.acknowledgements: %w", err)
	}
	olog := logger.With("edge", "mail-outbox")
	ob, err := app.NewOutbox(h.Store, h.Sealer, items, relay, h.Clock, olog, app.OutboxConfig{
		Host:             from.Address[strings.LastIndexByte(from.Address, '@')+1:],
		MaxAttempts:      out.MaxAttempts,
		Retry:            backoff.Policy{Initial: out.RetryInitial, Max: out.RetryMax},
		Acknowledgements: acks,
	})
	if err != nil {
		return err
	}
	runner, err := projection.New(projection.Config{Name: "mail-outbox", Store: h.Store, Model: ob, Head: h.Store.Head, Logger: olog})
	if err != nil {
		return err
	}
	for _, c := range append(runner.Collectors(), ob.Collectors()...) {
		if err := h.Server.Metrics().Register(c); err != nil {
			return fmt.Errorf("mail outbox metrics: %w", err)
		}
	}
	h.Go(runner.Run)
	h.Go(ob.Run)
	return nil
}
