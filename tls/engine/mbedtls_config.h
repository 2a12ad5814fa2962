/* tls/engine/mbedtls_config.h: the mbedTLS 3.6 configuration moat builds Debian's mbedtls source
 * package with (scripts/engine.sh copies it over include/mbedtls/mbedtls_config.h). Only what
 * moat uses is on; every line says why. Everything not listed is off. The accelerator driver
 * (tls/engine/moat_accel.c) is switched on by the build, not here. */
#ifndef MOAT_ENGINE_MBEDTLS_CONFIG_H
#define MOAT_ENGINE_MBEDTLS_CONFIG_H

/* ---- platform ---------------------------------------------------------------------------- */
#define MBEDTLS_HAVE_ASM             /* bignum and AES-NI inline assembly: the fallback's speed */
#define MBEDTLS_HAVE_TIME            /* ticket lifetimes */
#define MBEDTLS_HAVE_TIME_DATE       /* certificate validity checks */
#define MBEDTLS_PLATFORM_C           /* mbedtls_calloc/free, as the library expects */
#define MBEDTLS_PLATFORM_MEMORY      /* moat's allocator: record buffers on pages of their own,
                                      * resident only where written (tls/alloc.c) */
#define MBEDTLS_FS_IO                /* certificates and keys are read from files */
#define MBEDTLS_THREADING_C          /* workers share PSA's key store and the parsed keys */
#define MBEDTLS_THREADING_PTHREAD    /* ... on POSIX threads */
#define MBEDTLS_ERROR_C              /* mbedtls_strerror() for the words in moat's logs */
#define MBEDTLS_DEPRECATED_WARNING   /* as Debian builds it: a deprecated call is noticed */

/* ---- randomness --------------------------------------------------------------------------- */
#define MBEDTLS_ENTROPY_C            /* the OS's getrandom() seeds everything */
#define MBEDTLS_CTR_DRBG_C           /* the per-worker DRBG and PSA's own */

/* ---- PSA crypto: every operation a connection makes goes through it ----------------------- */
#define MBEDTLS_PSA_CRYPTO_C         /* the API the accelerator driver plugs into */
#define MBEDTLS_USE_PSA_CRYPTO       /* TLS 1.2 records, ECDHE and signatures take the PSA path
                                      * too, so the driver serves TLS 1.2 as well as 1.3 */
#define MBEDTLS_PSA_ASSUME_EXCLUSIVE_BUFFERS /* no buffer is shared with another trust domain in
                                      * one process: saves two copies and mallocs per record */
#define MBEDTLS_PSA_KEY_STORE_DYNAMIC /* every handshake holds ephemeral keys: no fixed slot cap */

/* ---- symmetric crypto: the suites moat offers (tls/context.c) ----------------------------- */
#define MBEDTLS_AES_C                /* AES-128/256-GCM suites */
#define MBEDTLS_AESNI_C              /* the fallback's AES on x86-64 */
#define MBEDTLS_AESCE_C              /* and on 64-bit Arm */
#define MBEDTLS_GCM_C                /* AES-GCM */
#define MBEDTLS_CHACHA20_C           /* ChaCha20-Poly1305 suites */
#define MBEDTLS_POLY1305_C           /* ... */
#define MBEDTLS_CHACHAPOLY_C         /* ... */
#define MBEDTLS_CIPHER_C             /* the generic layer GCM and session tickets build on */

/* ---- hashes -------------------------------------------------------------------------------- */
#define MBEDTLS_MD_C                 /* HMAC, HKDF and the TLS 1.2 PRF */
#define MBEDTLS_SHA256_C             /* SHA-256 suites and signatures */
#define MBEDTLS_SHA384_C             /* SHA-384 suites (AES-256-GCM) and signatures */
#define MBEDTLS_SHA512_C             /* what SHA-384 is computed with */
#define MBEDTLS_SHA1_C               /* key identifiers of the development certificate (RFC 5280
                                      * §4.2.1.2); never a TLS signature */
#define MBEDTLS_HKDF_C               /* the TLS 1.3 key schedule */

/* ---- public keys ----------------------------------------------------------------------------- */
#define MBEDTLS_BIGNUM_C             /* RSA and ECC */
#define MBEDTLS_ECP_C                /* elliptic curves */
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED /* P-256: key exchange and ECDSA certificates */
#define MBEDTLS_ECP_DP_SECP384R1_ENABLED /* P-384: likewise */
#define MBEDTLS_ECP_DP_CURVE25519_ENABLED /* X25519: the key exchange clients prefer */
#define MBEDTLS_ECP_NIST_OPTIM       /* faster NIST curves in the fallback */
#define MBEDTLS_ECDH_C               /* ECDHE */
#define MBEDTLS_ECDSA_C              /* ECDSA certificates */
/* MBEDTLS_ECDSA_DETERMINISTIC off: signatures are randomized, which the driver serves
 * (OpenSSL 3.0 has no deterministic ECDSA); OpenSSL's nonce is hedged with the key and hash. */
#define MBEDTLS_RSA_C                /* RSA certificates */
#define MBEDTLS_PKCS1_V15            /* RSA PKCS#1 v1.5 signatures (TLS 1.2) */
#define MBEDTLS_PKCS1_V21            /* RSA-PSS signatures (TLS 1.3) */
#define MBEDTLS_PK_C                 /* keys */
#define MBEDTLS_PK_PARSE_C           /* key files */
#define MBEDTLS_PK_WRITE_C           /* the development certificate's key file; PSA import */
#define MBEDTLS_ASN1_PARSE_C         /* DER */
#define MBEDTLS_ASN1_WRITE_C         /* DER (signatures, certificates moat writes) */
#define MBEDTLS_OID_C                /* algorithm and extension identifiers */
#define MBEDTLS_BASE64_C             /* PEM */
#define MBEDTLS_PEM_PARSE_C          /* PEM certificate and key files */
#define MBEDTLS_PEM_WRITE_C          /* the development certificate's PEM files */

/* ---- X.509 --------------------------------------------------------------------------------- */
#define MBEDTLS_X509_USE_C           /* certificates */
#define MBEDTLS_X509_CRT_PARSE_C     /* certificate chains moat serves (and a client verifies) */
#define MBEDTLS_X509_CRL_PARSE_C     /* revocation lists for client certificates */
#define MBEDTLS_X509_RSASSA_PSS_SUPPORT /* chains signed with RSA-PSS */
#define MBEDTLS_X509_CREATE_C        /* the development certificate */
#define MBEDTLS_X509_CRT_WRITE_C     /* ... */
#define MBEDTLS_X509_CSR_WRITE_C     /* ACME finalizes an order with a CSR */

/* ---- TLS ----------------------------------------------------------------------------------- */
#define MBEDTLS_SSL_TLS_C            /* TLS */
#define MBEDTLS_SSL_SRV_C            /* the server moat is */
#define MBEDTLS_SSL_CLI_C            /* the client ACME and health checks need */
#define MBEDTLS_SSL_PROTO_TLS1_2     /* TLS 1.2 */
#define MBEDTLS_SSL_PROTO_TLS1_3     /* TLS 1.3 */
#define MBEDTLS_SSL_TLS1_3_COMPATIBILITY_MODE /* the CCS middleboxes expect (RFC 8446 §D.4) */
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED /* full TLS 1.3 handshakes */
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL_ENABLED /* TLS 1.3 resumption, with
                                      * ECDHE (psk_dhe_ke: forward secret) */
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED /* TLS 1.2 ECDHE-ECDSA suites */
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED   /* TLS 1.2 ECDHE-RSA suites */
#define MBEDTLS_SSL_EXTENDED_MASTER_SECRET /* TLS 1.2 sessions bound to their handshake (RFC 7627) */
#define MBEDTLS_SSL_SESSION_TICKETS  /* resumption */
#define MBEDTLS_SSL_TICKET_C         /* ... with moat's ticket keys */
#define MBEDTLS_SSL_SERVER_NAME_INDICATION /* SNI (logged; certificates by name later) */
#define MBEDTLS_SSL_ALPN             /* ALPN http/1.1 (h2 later) */
#define MBEDTLS_SSL_ALL_ALERT_MESSAGES /* the alert for every failure, not just some */
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE /* client certificates, to be checked and forwarded */
#define MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH /* record buffers sized to need, not fixed at setup */
#define MBEDTLS_SSL_MAX_FRAGMENT_LENGTH /* which that needs: a TLS 1.2 client asking for small
                                      * records (RFC 6066 §4) gets small buffers too */
#define MBEDTLS_SSL_ASYNC_PRIVATE    /* compiled in for signatures off the loop later; unused */
#define MBEDTLS_SSL_EARLY_DATA       /* compiled in for 0-RTT later; off at run time (the
                                      * default: mbedtls_ssl_conf_early_data is never called) */
#define MBEDTLS_SSL_IN_CONTENT_LEN 16384 /* a peer may send records of 2^14 bytes (RFC 8446 §5.1) */
#define MBEDTLS_SSL_OUT_CONTENT_LEN 16384 /* full records out: smaller ones cost bulk throughput */

/* Off on purpose, against Debian's build: DEBUG_C (a debug hook on every record), RENEGOTIATION
 * (refused anyway), DTLS and everything only DTLS uses, CBC suites and ENCRYPT_THEN_MAC, static
 * RSA, DHE and PSK key exchanges, CCM, ARIA, Camellia, DES, MD5, RIPEMD-160, SHA-3, LMS,
 * NIST_KW, CMAC, curves other than these three, TLS 1.2 session-ID cache, context
 * serialization, keying-material export, persistent PSA keys,
 * MBEDTLS_SELF_TEST, NET_C and TIMING_C (moat has its own sockets and clocks). */

#endif
