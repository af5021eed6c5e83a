{{/*
One TensorRT for building and serving. A TensorRT plan loads only in the TensorRT version that
built it, so Triton (nvcr.io/nvidia/tritonserver:<YY.MM>-py3) and the builder (FROM
nvcr.io/nvidia/tensorrt:<YY.MM>-py3, tagged <version>-ngc<YY.MM>) must come from one NGC release,
and tensorrt.version must be the TensorRT that release ships. Rendering fails otherwise, before
anything reaches the cluster.
*/}}

{{/* NGC release (YY.MM) -> the TensorRT version (tensorrt.__version__) its tensorrt and
tritonserver images ship. Add a release only after hack/trt-e2e.sh passed with its images. */}}
{{- define "modelops.tensorrtReleases" -}}
{{- dict "26.10" "11.4.0.106" | toJson -}}
{{- end }}

{{/* The checked TensorRT version: fails unless Triton tag, builder tag and version agree. */}}
{{- define "modelops.tensorrtVersion" -}}
{{- $triton := .Values.images.triton.tag | toString }}
{{- $builder := .Values.images.builder.tag | toString }}
{{- $version := .Values.tensorrt.version | toString }}
{{- $release := regexFind "^[0-9]{2}\\.[0-9]{2}" $triton }}
{{- if not $release }}
{{- fail (printf "images.triton.tag %q must start with its NGC release YY.MM (e.g. 26.10-py3): the builder and tensorrt.version are matched against it" $triton) }}
{{- end }}
{{- $builderRelease := regexReplaceAll "^.*-ngc([0-9]{2}\\.[0-9]{2})$" $builder "${1}" }}
{{- if not (regexMatch "-ngc[0-9]{2}\\.[0-9]{2}$" $builder) }}
{{- fail (printf "images.builder.tag %q must end in -ngc%s: the builder image must be built FROM nvcr.io/nvidia/tensorrt:%s-py3, the release of images.triton.tag %q" $builder $release $release $triton) }}
{{- end }}
{{- if ne $builderRelease $release }}
{{- fail (printf "images.builder.tag %q is built for NGC release %s but images.triton.tag %q is release %s: TensorRT plans built by one do not load in the other; change both together" $builder $builderRelease $triton $release) }}
{{- end }}
{{- $known := include "modelops.tensorrtReleases" . | fromJson }}
{{- $expected := get $known $release }}
{{- if not $expected }}
{{- fail (printf "this chart does not know which TensorRT NGC release %s ships (known: %s); add it to templates/_tensorrt.tpl after running hack/trt-e2e.sh with those images" $release (keys $known | sortAlpha | join ", ")) }}
{{- end }}
{{- if ne $version $expected }}
{{- fail (printf "tensorrt.version %q is not the TensorRT of NGC release %s (images.triton.tag %q, images.builder.tag %q), which ships %s: change the images and the version together" $version $release $triton $builder $expected) }}
{{- end }}
{{- $version }}
{{- end }}
