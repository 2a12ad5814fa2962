# moat in a container: built and run on Debian 13 (trixie), whose own packages carry the
# mbedTLS 3.6 (built here from its source package, with moat's configuration) and llhttp 9 that
# moat needs. Certificates are mounted as files; the process
# runs as the unprivileged user "moat" and listens on 8443 (no root needed for a port > 1024).
#
#   docker build -t moat .
#   docker run --rm -p 8443:8443 -v "$PWD/certs:/certs:ro" moat \
#       --listen 0.0.0.0:8443 --cert /certs/tls.crt --key /certs/tls.key --backend app:8080

FROM debian:trixie-slim AS build
# deb-src too: the TLS engine is built from Debian's own mbedtls source package
# (scripts/engine.sh, the version of the libmbedtls-dev installed here).
RUN sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources \
 && apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
        libuv1-dev libyaml-dev libc-ares-dev libmbedtls-dev libllhttp-dev \
        dpkg-dev libssl-dev python3 python3-jinja2 python3-jsonschema patch
WORKDIR /src
COPY CMakeLists.txt ./
COPY config config
COPY http http
COPY tls tls
COPY proxy proxy
COPY scripts scripts
RUN scripts/engine.sh fetch \
 && rm -rf /var/lib/apt/lists/* \
 && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMOAT_TESTS=OFF \
 && cmake --build build -j"$(nproc)" \
 && strip build/moat

FROM debian:trixie-slim
# Only the shared libraries moat links against (names as of Debian 13); mbedTLS is linked in
# statically (the TLS engine), its accelerator uses OpenSSL's libcrypto.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libuv1t64 libyaml-0-2 libcares2 libssl3t64 \
        libllhttp9.2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --home-dir /var/lib/moat --create-home --shell /usr/sbin/nologin moat
COPY --from=build /src/build/moat /usr/local/bin/moat
# Without --cert, the development certificate is kept here (mount a volume to keep it).
ENV MOAT_STATE_DIR=/var/lib/moat
USER moat
EXPOSE 8443
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/moat"]
CMD ["--listen", "0.0.0.0:8443", "--cert", "/certs/tls.crt", "--key", "/certs/tls.key", \
     "--backend", "app:8080"]
