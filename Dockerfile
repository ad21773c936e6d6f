# syntax=docker/dockerfile:1
# Sluice's image: a static binary on distroless, running as non-root.
#   docker build -t ghcr.io/sluice-dev/sluice:v0.1.0 --build-arg VERSION=v0.1.0 .

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/sluice ./cmd/sluice

# CA certificates and nothing else; time zones are compiled into the binary.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["run"]
