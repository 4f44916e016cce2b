import { join } from 'node:path';
import { PagemapEntry, PagemapHead } from '../../../../proto/gen/criu/images';
import { EnvironmentError } from './errors';
import { PAGEMAP_MAGIC, decodeEntry, readImage } from './image-file';

export const PAGE_SIZE = 4096;

/** Pagemap flags (criu/include/page-read.h). */
const PE_PARENT = 1 << 0;
const PE_PRESENT = 1 << 2;

/** Where a byte range of a process's memory lies in its pages image. */
export interface ImageSegment {
  readonly fileOffset: number;
  readonly length: number;
}

/**
 * Why a range cannot be patched in this image: its pages are served by the source's page server (a lazy dump
 * leaves private anonymous pages there), lie in a parent image directory, or were not dumped at all.
 */
export type NotInImage = 'pages-on-source' | 'pages-in-parent' | 'pages-not-dumped';

export type Located =
  | { readonly inImage: true; readonly segments: readonly ImageSegment[] }
  | { readonly inImage: false; readonly reason: NotInImage };

interface Run {
  readonly start: number;
  readonly end: number;
  readonly flags: number;
  /** Offset of the run's first byte in the pages image; meaningful only for present runs. */
  readonly fileOffset: number;
}

/**
 * One process's pagemap-<pid>.img: which address ranges were dumped, and where their bytes are in
 * pages-<pages_id>.img (present runs, back to back, in pagemap order).
 */
export class PageMap {
  private constructor(
    readonly pagesPath: string,
    private readonly runs: readonly Run[],
  ) {}

  /** `undefined` when the process has no pagemap (a zombie). */
  static async read(imagesDir: string, pid: number): Promise<PageMap | undefined> {
    const path = join(imagesDir, `pagemap-${pid}.img`);
    const entries = await readImage(path, PAGEMAP_MAGIC);
    if (entries === undefined) return undefined;
    const [head, ...rest] = entries;
    if (head === undefined) {
      throw new EnvironmentError('NC_ENV_IMAGE_UNREADABLE', 'pagemap has no head entry', { context: { path } });
    }
    const { pagesId } = decodeEntry(PagemapHead, head, path);
    const runs: Run[] = [];
    let fileOffset = 0;
    for (const raw of rest) {
      const entry = decodeEntry(PagemapEntry, raw, path);
      const flags = entry.inParent === true ? PE_PARENT : (entry.flags ?? PE_PRESENT);
      const length = (entry.nrPages ?? entry.compatNrPages) * PAGE_SIZE;
      runs.push({ start: entry.vaddr, end: entry.vaddr + length, flags, fileOffset });
      if ((flags & PE_PRESENT) !== 0) fileOffset += length;
    }
    return new PageMap(join(imagesDir, `pages-${pagesId}.img`), runs);
  }

  /** The pages-image segments holding [start, end), or why the range is not all in this image. */
  locate(start: number, end: number): Located {
    const segments: ImageSegment[] = [];
    let at = start;
    for (const run of this.runs) {
      if (at >= end) break;
      if (run.end <= at) continue;
      if (run.start > at) return { inImage: false, reason: 'pages-not-dumped' };
      if ((run.flags & PE_PRESENT) === 0) {
        return { inImage: false, reason: (run.flags & PE_PARENT) !== 0 ? 'pages-in-parent' : 'pages-on-source' };
      }
      const until = Math.min(end, run.end);
      segments.push({ fileOffset: run.fileOffset + (at - run.start), length: until - at });
      at = until;
    }
    if (at < end) return { inImage: false, reason: 'pages-not-dumped' };
    return { inImage: true, segments };
  }
}
