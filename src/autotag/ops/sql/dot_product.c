/*
 * dot_product(real[], real[]) -> real, for psql queries in the MemSQL style:
 *
 *     SELECT photo_id FROM photo_vectors WHERE dot_product(feature, $1::real[]) > 0.9;
 *
 * Vectors are L2-normalised float4 arrays, so the dot product is the cosine similarity.
 * The kernel keeps 16 independent float accumulators so gcc -O3 vectorises it without
 * -ffast-math (no reassociation of a single running sum is needed), and it is compiled
 * for several ISA levels (target_clones) so one .so runs at full width on AVX-512 hosts
 * yet still loads on any x86-64-v2 machine.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"

PG_MODULE_MAGIC;

#define LANES 16

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(AUTOTAG_NO_CLONES)
#define KERNEL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL_CLONES
#endif

KERNEL_CLONES
static float
dot_kernel(const float *restrict a, const float *restrict b, int n)
{
	float		acc[LANES] = {0};
	float		sum = 0.0f;
	int			i = 0;

	for (; i + LANES <= n; i += LANES)
		for (int j = 0; j < LANES; j++)
			acc[j] += a[i + j] * b[i + j];
	for (; i < n; i++)
		sum += a[i] * b[i];
	/* Pairwise reduction of the lanes: same rounding on every ISA level. */
	for (int w = LANES / 2; w > 0; w /= 2)
		for (int j = 0; j < w; j++)
			acc[j] += acc[j + w];
	return acc[0] + sum;
}

static int
checked_length(ArrayType *arr, const char *which)
{
	if (ARR_ELEMTYPE(arr) != FLOAT4OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("dot_product: %s argument must be real[] (float4)", which)));
	if (ARR_HASNULL(arr) && array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("dot_product: %s array contains NULL elements", which)));
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("dot_product: %s array must be one-dimensional, got %d dimensions",
						which, ARR_NDIM(arr))));
	return ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
}

PG_FUNCTION_INFO_V1(dot_product);

Datum
dot_product(PG_FUNCTION_ARGS)
{
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *b = PG_GETARG_ARRAYTYPE_P(1);
	int			na = checked_length(a, "first");
	int			nb = checked_length(b, "second");
	float		result;

	if (na != nb)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("dot_product: dimension mismatch (%d vs %d)", na, nb),
				 errhint("Both vectors must come from the same feature set.")));
	result = dot_kernel((const float *) ARR_DATA_PTR(a), (const float *) ARR_DATA_PTR(b), na);
	PG_FREE_IF_COPY(a, 0);
	PG_FREE_IF_COPY(b, 1);
	PG_RETURN_FLOAT4(result);
}
