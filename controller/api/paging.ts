import { ValidationError } from '../errors.ts';
import { isUuid } from '../nodes/index.ts';

export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

export function pageLimit(limit: number): number {
  if (limit === 0) return DEFAULT_PAGE;
  if (limit > MAX_PAGE) throw new ValidationError('limit', `at most ${MAX_PAGE} per page, got ${limit}`);
  return limit;
}

export function pageMarker(marker: string): string | null {
  if (marker === '') return null;
  if (!isUuid(marker)) throw new ValidationError('marker', 'must be the uuid of the last item of the previous page');
  return marker;
}
