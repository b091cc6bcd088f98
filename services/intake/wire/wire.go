// Package wire mounts the intake service on a process (pkg/host): the
// single binary and intake's own binary build it the same way.
package wire

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/services/intake/adapters/casenumber"
	"github.com/kontakt-se/kontakt/services/intake/adapters/idempotency"
	"github.com/kontakt-se/kontakt/services/intake/app"
	"github.com/kontakt-se/kontakt/services/intake/domain"
	"github.com/kontakt-se/kontakt/services/intake/ports"
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
	svc, err := app.NewService(h.Store, h.Sealer, numbers, idem, h.Clock, logger, app.Config{
		PayloadKey: payloadKey,
		Categories: domain.NewCategories(categories),
	})
	if err != nil {
		return err
	}
	// Registrations that arrive together share their disk syncs.
	h.Go(svc.RunGroupCommit)
	submissions, err := ports.NewSubmissionMetrics(h.Server.Metrics())
	if err != nil {
		return fmt.Errorf("intake: submission metrics: %w", err)
	}
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
