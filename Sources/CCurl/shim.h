#ifndef NURTURE_CCURL_SHIM_H
#define NURTURE_CCURL_SHIM_H
#include <curl/curl.h>

/* curl_easy_setopt / curl_easy_getinfo are variadic and cannot be called from Swift.
   One typed, non-variadic helper per argument kind. */
static inline CURLcode nurture_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode nurture_curl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode nurture_curl_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode nurture_curl_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode nurture_curl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode nurture_curl_setopt_write_function(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, f);
}
static inline CURLcode nurture_curl_setopt_header_function(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, f);
}
static inline CURLcode nurture_curl_setopt_read_function(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(h, CURLOPT_READFUNCTION, f);
}
static inline CURLcode nurture_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode nurture_curl_getinfo_double(CURL *h, CURLINFO i, double *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode nurture_curl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode nurture_curl_getinfo_string(CURL *h, CURLINFO i, char **v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode nurture_curl_global_init(void) { return curl_global_init(CURL_GLOBAL_DEFAULT); }

/* POST body from caller-owned memory (not copied: it must stay valid until curl_easy_perform returns).
   Binary-safe: the size is set explicitly. An empty body still needs a non-NULL pointer, else curl would fall
   back to the read callback. */
static inline CURLcode nurture_curl_setopt_postfields(CURL *h, const void *data, curl_off_t size) {
    static const char empty[1] = { 0 };
    CURLcode rc = curl_easy_setopt(h, CURLOPT_POSTFIELDS, data ? data : (const void *)empty);
    if (rc != CURLE_OK) return rc;
    return curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, size);
}
#endif
