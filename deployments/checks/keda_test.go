package checks

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KEDA's Go module (github.com/kedacore/keda/v2) pulls in a controller's worth
// of dependencies and pins its own Kubernetes versions, so the KEDA objects in
// deployments/kubernetes are decoded strictly into these mirrors of the KEDA v2
// (keda.sh/v1alpha1) API types instead: apis/keda/v1alpha1/scaledobject_types.go,
// scaletriggers_types.go and triggerauthentication_types.go, as of KEDA v2.20.
// They keep the json names of every spec field (statuses left out: manifests do
// not set them). TriggerAuthentication mirrors only the sources roomcast's
// manifests can use (env, secretTargetRef, configMapTargetRef, podIdentity); a
// manifest using another (Vault, a cloud secret manager) fails to decode until
// its field is added here.

// kedaScaledObject mirrors keda.sh/v1alpha1 ScaledObject.
type kedaScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              kedaScaledObjectSpec `json:"spec"`
}

type kedaScaledObjectSpec struct {
	ScaleTargetRef        *kedaScaleTarget    `json:"scaleTargetRef"`
	PollingInterval       *int32              `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32              `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32              `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32              `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32              `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32              `json:"maxReplicaCount,omitempty"`
	Advanced              *kedaAdvancedConfig `json:"advanced,omitempty"`
	Triggers              []kedaScaleTrigger  `json:"triggers"`
	Fallback              *kedaFallback       `json:"fallback,omitempty"`
}

type kedaFallback struct {
	FailureThreshold int32  `json:"failureThreshold"`
	Replicas         int32  `json:"replicas"`
	Behavior         string `json:"behavior,omitempty"`
}

type kedaAdvancedConfig struct {
	HorizontalPodAutoscalerConfig *kedaHPAConfig        `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool                  `json:"restoreToOriginalReplicaCount,omitempty"`
	ScalingModifiers              *kedaScalingModifiers `json:"scalingModifiers,omitempty"`
}

type kedaScalingModifiers struct {
	Formula          string                         `json:"formula,omitempty"`
	Target           string                         `json:"target,omitempty"`
	ActivationTarget string                         `json:"activationTarget,omitempty"`
	MetricType       autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

type kedaHPAConfig struct {
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	Name     string                                         `json:"name,omitempty"`
}

type kedaScaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type kedaScaleTrigger struct {
	Type              string                         `json:"type"`
	Name              string                         `json:"name,omitempty"`
	UseCachedMetrics  bool                           `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string              `json:"metadata"`
	AuthenticationRef *kedaAuthenticationRef         `json:"authenticationRef,omitempty"`
	MetricType        autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

type kedaAuthenticationRef struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

// kedaTriggerAuthentication mirrors keda.sh/v1alpha1 TriggerAuthentication
// (the sources listed above).
type kedaTriggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              kedaTriggerAuthenticationSpec `json:"spec"`
}

type kedaTriggerAuthenticationSpec struct {
	PodIdentity        *kedaPodIdentity  `json:"podIdentity,omitempty"`
	SecretTargetRef    []kedaTargetRef   `json:"secretTargetRef,omitempty"`
	ConfigMapTargetRef []kedaTargetRef   `json:"configMapTargetRef,omitempty"`
	Env                []kedaEnvironment `json:"env,omitempty"`
}

type kedaPodIdentity struct {
	Provider              string  `json:"provider"`
	IdentityID            *string `json:"identityId,omitempty"`
	IdentityTenantID      *string `json:"identityTenantId,omitempty"`
	IdentityAuthorityHost *string `json:"identityAuthorityHost,omitempty"`
	RoleArn               *string `json:"roleArn,omitempty"`
	IdentityOwner         *string `json:"identityOwner,omitempty"`
}

type kedaTargetRef struct {
	Parameter string `json:"parameter"`
	Name      string `json:"name"`
	Key       string `json:"key"`
}

type kedaEnvironment struct {
	Parameter     string `json:"parameter"`
	Name          string `json:"name"`
	ContainerName string `json:"containerName,omitempty"`
}

// kedaKafkaParameters are the parameters KEDA's kafka scaler reads
// (pkg/scalers/kafka_scaler.go, the keda:"name=..." tags of kafkaMetadata, as
// of KEDA v2.20): trigger metadata, auth parameters, or both. A parameter read
// from the environment is written <name>FromEnv in the metadata. KEDA ignores
// a key it does not know, so a misspelt one would silently fall back to the
// default: the check rejects keys outside this list.
var kedaKafkaParameters = map[string]bool{
	"bootstrapServers": true, "consumerGroup": true, "topic": true, "partitionLimitation": true,
	"lagThreshold": true, "activationLagThreshold": true, "offsetResetPolicy": true,
	"allowIdleConsumers": true, "excludePersistentLag": true, "scaleToZeroOnInvalidOffset": true,
	"limitToPartitionsWithLag": true, "ensureEvenDistributionOfPartitions": true, "fullMetadata": true,
	"version": true, "tls": true, "unsafeSsl": true, "ca": true, "cert": true, "key": true, "keyPassword": true,
	"sasl": true, "username": true, "password": true, "saslTokenProvider": true, "scopes": true,
	"oauthTokenEndpointUri": true, "oauthExtensions": true, "keytab": true, "realm": true,
	"kerberosConfig": true, "kerberosServiceName": true, "kerberosDisableFAST": true, "awsRegion": true,
}

// kedaSASL maps KAFKA_SASL_MECHANISM to the kafka scaler's "sasl" value.
var kedaSASL = map[string]string{"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
