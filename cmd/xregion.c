/* xregion.c: placeholder main while the CLI is written. */
int main(void);
int main(void) { return 0; }
