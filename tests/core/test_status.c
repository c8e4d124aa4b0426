/* tests/core/test_status.c - the status list (include/clgrad/status.h, src/core/status.c):
 * every code has its own name and a sentence, and an unknown value is named as such.
 * Needs no device.
 */
/* cmocka.h needs these three first */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
// clang-format on

#include <string.h>

#include "clgrad.h"

typedef struct status_row {
    clg_status value;
    const char *name;
    const char *text;
} status_row;

/* The expected table comes from the same X-macro, so a code added there is tested here. */
static const status_row rows[] = {
#define ROW_(name, value, text) {name, #name, text},
    CLG_STATUS_LIST(ROW_)
#undef ROW_
};
static const size_t n_rows = sizeof rows / sizeof rows[0];

static void test_every_status_has_name_and_string(void **state) {
    (void)state;
    assert_true(n_rows >= 13);
    for (size_t i = 0; i < n_rows; i++) {
        const char *name = clg_status_name(rows[i].value);
        const char *text = clg_status_string(rows[i].value);
        assert_non_null(name);
        assert_non_null(text);
        assert_string_equal(name, rows[i].name);
        assert_string_equal(text, rows[i].text);
        assert_true(strlen(text) > 0);
    }
}

static void test_ok_is_zero_and_failures_negative(void **state) {
    (void)state;
    assert_int_equal(CLG_OK, 0);
    assert_string_equal(clg_status_name(CLG_OK), "CLG_OK");
    for (size_t i = 0; i < n_rows; i++)
        if (rows[i].value != CLG_OK) assert_true((int)rows[i].value < 0);
}

static void test_names_and_values_unique(void **state) {
    (void)state;
    for (size_t i = 0; i < n_rows; i++) {
        for (size_t j = i + 1; j < n_rows; j++) {
            assert_int_not_equal(rows[i].value, rows[j].value);
            assert_string_not_equal(clg_status_name(rows[i].value), clg_status_name(rows[j].value));
            assert_string_not_equal(clg_status_string(rows[i].value), clg_status_string(rows[j].value));
        }
    }
}

static void test_unknown_status(void **state) {
    (void)state;
    const int unknown[] = {1, 7, -13, -999, 12345, -2147483647};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const clg_status s = (clg_status)unknown[i];
        bool listed = false;
        for (size_t j = 0; j < n_rows; j++)
            listed |= rows[j].value == s;
        if (listed) continue; /* the list grew over this value: nothing to check */
        assert_string_equal(clg_status_name(s), "CLG_UNKNOWN_STATUS");
        const char *text = clg_status_string(s);
        assert_non_null(text);
        assert_true(strlen(text) > 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_status_has_name_and_string),
        cmocka_unit_test(test_ok_is_zero_and_failures_negative),
        cmocka_unit_test(test_names_and_values_unique),
        cmocka_unit_test(test_unknown_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
