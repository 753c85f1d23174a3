#ifndef NURTURE_CLIBPQ_SHIM_H
#define NURTURE_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
