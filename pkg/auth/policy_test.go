package auth

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStaticPolicy(t *testing.T) {
	p := StaticPolicy{
		"/kontakt.routing.v1.RoutingService/CloseCase": {Roles: []Role{RoleAgent, RoleOfficer}},
		"/kontakt.routing.v1.RoutingService/*":         {Roles: []Role{RoleSupervisor}},
		"/kontakt.intake.v1.IntakeService/SubmitForm":  {Roles: []Role{RoleFormClient}},
	}
	tests := []struct {
		method string
		want   Rule
		found  bool
	}{
		{method: "/kontakt.routing.v1.RoutingService/CloseCase", want: Rule{Roles: []Role{RoleAgent, RoleOfficer}}, found: true},
		{method: "/kontakt.routing.v1.RoutingService/ListQueues", want: Rule{Roles: []Role{RoleSupervisor}}, found: true},
		{method: "/kontakt.intake.v1.IntakeService/SubmitForm", want: Rule{Roles: []Role{RoleFormClient}}, found: true},
		{method: "/kontakt.intake.v1.IntakeService/RegisterCase", found: false},
		{method: "/kontakt.routing.v1.RoutingServiceX/CloseCase", found: false},
		{method: "/kontakt.routing.v1.RoutingService/", found: false},
		{method: "", found: false},
		{method: "/", found: false},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			got, ok := p.Rule(tt.method)
			require.Equal(t, tt.found, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestPublicMethods(t *testing.T) {
	next := StaticPolicy{
		"/kontakt.routing.v1.RoutingService/CloseCase": {Roles: []Role{RoleAgent}},
		"/grpc.reflection.v1.ServerReflection/*":       {Roles: []Role{RoleSupervisor}},
	}
	tests := []struct {
		name   string
		policy Policy
		method string
		want   Rule
		found  bool
	}{
		{name: "health check", policy: PublicMethods(nil), method: "/grpc.health.v1.Health/Check", want: Rule{Public: true}, found: true},
		{name: "health watch", policy: PublicMethods(nil), method: "/grpc.health.v1.Health/Watch", want: Rule{Public: true}, found: true},
		{name: "health list", policy: PublicMethods(nil), method: "/grpc.health.v1.Health/List", want: Rule{Public: true}, found: true},
		{name: "reflection v1", policy: PublicMethods(nil), method: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", want: Rule{Public: true}, found: true},
		{name: "reflection v1alpha", policy: PublicMethods(nil), method: "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", want: Rule{Public: true}, found: true},
		{name: "other method stays unknown", policy: PublicMethods(nil), method: "/kontakt.routing.v1.RoutingService/CloseCase", found: false},
		{name: "look-alike service", policy: PublicMethods(nil), method: "/grpc.health.v1.HealthX/Check", found: false},
		{name: "service without method", policy: PublicMethods(nil), method: "/grpc.health.v1.Health", found: false},
		{name: "next answers its methods", policy: PublicMethods(next), method: "/kontakt.routing.v1.RoutingService/CloseCase", want: Rule{Roles: []Role{RoleAgent}}, found: true},
		{name: "next may restrict reflection", policy: PublicMethods(next), method: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", want: Rule{Roles: []Role{RoleSupervisor}}, found: true},
		{name: "health still public with next", policy: PublicMethods(next), method: "/grpc.health.v1.Health/Check", want: Rule{Public: true}, found: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.policy.Rule(tt.method)
			require.Equal(t, tt.found, ok)
			require.Equal(t, tt.want, got)
		})
	}
}
