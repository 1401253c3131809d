/* A fork bomb: every process forks forever and spins when fork fails. The process limit
   bounds the count; the cpu limit ends it. */
#include <unistd.h>
int main(void) {
  for (;;) fork();
}
