// Card-number tokens: the same length as the card number, its last four
// digits, a valid Luhn check digit, and the reserved first digit 0. ISO/IEC
// 7812 gives the major industry identifier 0 to ISO/TC 68 and future industry
// assignments: no card scheme issues primary account numbers that start with
// 0, so a token can never be a real card (and a value starting with 0 is
// refused for tokenization: it may be a token already).
import { randomBelow } from './aead.ts';
import { luhnValid } from '../../shared/mask.ts';

export const CARD_TOKEN_PREFIX = '0';
const DIGITS = /^[0-9]{13,19}$/;

/** Luhn (mod 10) over a string of digits: the masking module's own check. */
export { luhnValid };

/** Whether `value` is something a card key tokenizes: 13–19 digits, Luhn-valid, not in the reserved range. */
export function isCardNumber(value: string): boolean {
  return DIGITS.test(value) && !value.startsWith(CARD_TOKEN_PREFIX) && luhnValid(value);
}

/**
 * A random token for `card`: prefix, random digits, the card's last four; the
 * digit after the prefix is chosen so the whole passes Luhn (every digit of
 * one position maps to a distinct residue mod 10, so exactly one fits).
 */
export function cardToken(card: string): string {
  const n = card.length;
  const middle = Array.from({ length: n - 5 }, () => randomBelow(10));
  const digits = [Number(CARD_TOKEN_PREFIX), ...middle, ...card.slice(-4).split('').map(Number)];
  const fix = 1; // position of the adjusted digit
  for (let d = 0; d < 10; d++) {
    digits[fix] = d;
    const candidate = digits.join('');
    if (luhnValid(candidate)) return candidate;
  }
  throw new Error('unreachable: no Luhn digit fits');
}

export const isCardToken = (token: string): boolean => /^[0-9]{13,19}$/.test(token) && token.startsWith(CARD_TOKEN_PREFIX) && luhnValid(token);
