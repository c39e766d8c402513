/* version.h - the daemon's version and the User-Agent it sends.
 *
 * CMake passes KK_VERSION (the project version in CMakeLists.txt); a
 * build without it says so rather than claim a release. */
#ifndef KK_BASE_VERSION_H
#define KK_BASE_VERSION_H

#ifndef KK_VERSION
#define KK_VERSION "0.0.0-unknown"
#endif

/* What HTTP/2 (KubeMQ) and HTTP (AWS) requests carry as User-Agent. */
#define KK_USER_AGENT "kubemq-kinesis/" KK_VERSION

#endif
