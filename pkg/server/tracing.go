package server

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
)

// newTracing builds a tracer provider exporting over OTLP/gRPC and the gRPC
// server option that records spans with it. Nothing is installed globally:
// the provider and propagators are passed to otelgrpc explicitly so that two
// Servers in one process (tests, the single binary) cannot interfere.
// The exporter connects lazily, so an unreachable collector does not stop
// the service from starting.
func newTracing(cfg TracingConfig) (*sdktrace.TracerProvider, grpc.ServerOption, error) {
	exporterOpts := []otlptracegrpc.Option{}
	if strings.Contains(cfg.OTLPEndpoint, "://") {
		exporterOpts = append(exporterOpts, otlptracegrpc.WithEndpointURL(cfg.OTLPEndpoint))
	} else {
		exporterOpts = append(exporterOpts, otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint))
	}
	if cfg.Insecure {
		exporterOpts = append(exporterOpts, otlptracegrpc.WithInsecure())
	}
	exporter, err := otlptracegrpc.New(context.Background(), exporterOpts...)
	if err != nil {
		return nil, nil, fmt.Errorf("server: OTLP trace exporter for %q: %w", cfg.OTLPEndpoint, err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(sdkresource.NewSchemaless(attribute.String("service.name", cfg.ServiceName))),
	)
	handler := otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		// Metrics come from Prometheus; do not fall back to the global
		// OpenTelemetry meter provider.
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		// Health probes would be most of the spans and tell nothing.
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	)
	return tp, grpc.StatsHandler(handler), nil
}
