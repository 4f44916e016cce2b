import { NomadChainError } from '../../common/errors';

/** A migration could not go forward; the record says whether it rolled back or needs an operator. */
export class MigrationError extends NomadChainError {}
