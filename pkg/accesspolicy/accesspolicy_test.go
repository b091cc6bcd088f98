package accesspolicy

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	authv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/auth/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
)

func allServices() []protoreflect.ServiceDescriptor {
	return []protoreflect.ServiceDescriptor{
		intakev1.File_kontakt_intake_v1_intake_proto.Services().Get(0),
		routingv1.File_kontakt_routing_v1_routing_proto.Services().Get(0),
		retentionv1.File_kontakt_retention_v1_retention_proto.Services().Get(0),
		statisticsv1.File_kontakt_statistics_v1_statistics_proto.Services().Get(0),
	}
}

func TestEveryRPCDeclaresItsRoles(t *testing.T) {
	policy, err := FromServices(allServices()...)
	require.NoError(t, err)
	count := 0
	for _, svc := range allServices() {
		count += svc.Methods().Len()
	}
	require.Len(t, policy, count, "one rule per RPC")
	for method, rule := range policy {
		require.False(t, rule.Public, "%s must not be public", method)
		require.NotEmpty(t, rule.Roles, method)
	}
}

func TestRulesComeFromTheProto(t *testing.T) {
	policy, err := FromServices(allServices()...)
	require.NoError(t, err)
	tests := []struct {
		method string
		want   []auth.Role
	}{
		{"/kontakt.intake.v1.IntakeService/SubmitForm", []auth.Role{auth.RoleFormClient}},
		{"/kontakt.intake.v1.IntakeService/RegisterCase", []auth.Role{auth.RoleAgent, auth.RoleSupervisor}},
		{"/kontakt.routing.v1.RoutingService/ListAuditTrail", []auth.Role{auth.RoleDPO}},
		{"/kontakt.statistics.v1.StatisticsService/Query", []auth.Role{auth.RoleAnalyst, auth.RoleSupervisor}},
		{"/kontakt.retention.v1.RetentionService/EraseSubject", []auth.Role{auth.RoleDPO}},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			rule, ok := policy.Rule(tt.method)
			require.True(t, ok)
			require.Equal(t, tt.want, rule.Roles)
		})
	}
	_, ok := policy.Rule("/kontakt.intake.v1.IntakeService/Nope")
	require.False(t, ok, "unknown methods are not in the policy")
}

func TestUndeclaredMethodFailsClosed(t *testing.T) {
	// A copy of the intake service with the option stripped from one RPC.
	fdp := protodesc.ToFileDescriptorProto(intakev1.File_kontakt_intake_v1_intake_proto)
	m := fdp.GetService()[0].GetMethod()[0]
	m.Options = proto.Clone(m.GetOptions()).(*descriptorpb.MethodOptions)
	proto.ClearExtension(m.Options, authv1.E_Access)
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	require.NoError(t, err)
	_, err = FromServices(fd.Services().Get(0))
	require.ErrorIs(t, err, ErrUndeclared)
	require.ErrorContains(t, err, "/kontakt.intake.v1.IntakeService/RegisterCase")
}

func TestPublicSubmissionsComeFromTheProto(t *testing.T) {
	require.Equal(t, []string{"/kontakt.intake.v1.IntakeService/SubmitForm"}, PublicSubmissions(allServices()...),
		"forms are the only public submissions over gRPC; Open311 is limited by its handler")
}
