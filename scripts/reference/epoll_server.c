/* A minimal C epoll greeting server, for scripts/compare.sh: the floor for server CPU
   per connection (accept4, write, close). Built twice: plain (`c`), and with
   -DCLOSE_POLICY=1 (`c-policy`), which adds greeter's close policy. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* CLOSE_POLICY 1: greeter's close: FIN right behind the greeting, then one TCP_INFO to
   learn whether anything is unsent or unread (a 38-byte greeting to a silent peer never
   is, so the answer is not acted on here). */
#ifndef CLOSE_POLICY
#define CLOSE_POLICY 0
#endif

static const char greeting[] = "Hello there! This is the hosted server";

int main(void) {
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 1024) ||
        getsockname(listener, (struct sockaddr *)&addr, &len)) {
        perror("listen");
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    int poll = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN | EPOLLET, .data.fd = listener}, ready[64];
    epoll_ctl(poll, EPOLL_CTL_ADD, listener, &event);
    for (;;) {
        if (epoll_wait(poll, ready, 64, -1) < 0 && errno != EINTR) return 1;
        for (;;) {
            int conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
            if (conn < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                break; /* EAGAIN: backlog drained */
            }
            if (write(conn, greeting, sizeof greeting - 1) < 0) perror("write");
#if CLOSE_POLICY
            struct tcp_info info;
            socklen_t info_len = sizeof info;
            shutdown(conn, SHUT_WR);
            if (getsockopt(conn, IPPROTO_TCP, TCP_INFO, &info, &info_len)) perror("getsockopt");
#endif
            close(conn);
        }
    }
}
